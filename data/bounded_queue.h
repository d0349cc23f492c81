// A blocking multi-producer multi-consumer queue with a capacity: producers wait when it is
// full, which is what keeps the ingest pipeline's memory flat. close() is called once per
// producer; consumers see the end when every producer has closed and the queue is empty.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace incept::data {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity, int producers = 1)
      : capacity_(capacity), producers_(producers) {}

  // False when the queue was cancelled (the item is dropped).
  bool push(T item) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_ || cancelled_; });
    if (cancelled_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }
  // False at the end (all producers closed and empty) or when cancelled.
  bool pop(T* out) {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return !items_.empty() || producers_ == 0 || cancelled_; });
    if (items_.empty() || cancelled_) return false;
    *out = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard lock(mu_);
    if (producers_ > 0) --producers_;
    not_empty_.notify_all();
  }
  void cancel() {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> items_;
  std::size_t capacity_;
  int producers_;
  bool cancelled_ = false;
};

}  // namespace incept::data

// Greedy lifetime-based arena placement (memory_plan.h).
#include "engine/memory_plan.h"

#include <algorithm>
#include <numeric>

namespace incept {

int MemoryPlan::add(std::int64_t elems, int first, int last) {
  buffers_.push_back({std::max<std::int64_t>(elems, 1), std::min(first, last), std::max(first, last)});
  return int(buffers_.size()) - 1;
}

void MemoryPlan::extend(int id, int first, int last) {
  Buffer& b = buffers_[id];
  b.first = std::min(b.first, std::min(first, last));
  b.last = std::max(b.last, std::max(first, last));
}

std::int64_t MemoryPlan::total_elems() const {
  std::int64_t sum = 0;
  for (const Buffer& b : buffers_) sum += (b.elems + align_ - 1) / align_ * align_;
  return sum;
}

void MemoryPlan::place() {
  std::vector<int> order(buffers_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return buffers_[a].elems > buffers_[b].elems; });
  std::vector<int> placed;
  arena_ = 0;
  for (int id : order) {
    Buffer& b = buffers_[id];
    const std::int64_t size = (b.elems + align_ - 1) / align_ * align_;
    // Address ranges of placed buffers alive at the same time, sorted by offset.
    std::vector<std::pair<std::int64_t, std::int64_t>> busy;
    for (int o : placed) {
      const Buffer& p = buffers_[o];
      if (p.first <= b.last && b.first <= p.last)
        busy.push_back({p.offset, p.offset + (p.elems + align_ - 1) / align_ * align_});
    }
    std::sort(busy.begin(), busy.end());
    std::int64_t at = 0;
    for (const auto& [lo, hi] : busy) {
      if (at + size <= lo) break;
      at = std::max(at, hi);
    }
    b.offset = at;
    arena_ = std::max(arena_, at + size);
    placed.push_back(id);
  }
}

}  // namespace incept

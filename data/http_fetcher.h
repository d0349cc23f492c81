// Concurrent HTTP GETs on one thread with libcurl's multi interface: many transfers in
// flight, keep-alive connections reused, a per-host connection limit, timeouts for connect,
// whole transfer and stalls (no byte for N seconds), a body size cap, redirects followed
// by hand only inside the crawl's scope, and a bounded number of outstanding requests and
// undelivered results so memory stays flat whatever the dataset size.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/url.h"

namespace incept::data {

struct HttpOptions {
  int max_in_flight = 64;     // concurrent transfers
  int max_per_host = 32;      // connections to one host
  int max_outstanding = 256;  // queued + in flight + undelivered results (memory bound)
  double connect_timeout_s = 10;
  double timeout_s = 300;       // a whole transfer
  double stall_timeout_s = 30;  // abort when nothing arrives for this long (seconds)
  std::int64_t max_bytes = 64 << 20;
  int max_redirects = 5;
  int attempts = 2;  // for connection-level failures (reset, refused, empty reply)
};

struct FetchResult {
  std::uint64_t tag = 0;
  std::string url;        // as submitted
  std::string final_url;  // after redirects
  long status = 0;        // HTTP status, 0 if none
  std::string content_type;
  std::string body;
  std::string error;  // empty on success (2xx); else a message without the URL
  bool ok() const { return error.empty(); }
};

class HttpFetcher {
 public:
  // Redirects are followed only to URLs within `scope` (same host/port, under its path).
  HttpFetcher(HttpOptions opt, Url scope);
  ~HttpFetcher();
  HttpFetcher(const HttpFetcher&) = delete;
  HttpFetcher& operator=(const HttpFetcher&) = delete;

  // Queues a GET. With block, waits while max_outstanding requests are outstanding.
  void submit(std::string url, std::uint64_t tag, bool block = true);
  // Waits for the next finished request. False once close() was called and all are delivered.
  bool next(FetchResult* out);
  // No more submits; next() drains what is outstanding, then returns false.
  void close();
  // Cancels everything: next() returns false at once.
  void abort();

  std::int64_t outstanding() const;
  std::int64_t bytes_received() const { return bytes_.load(); }

  struct Transfer;  // one request's state (internal; public for libcurl's C callbacks)

 private:
  void loop();
  void start(std::unique_ptr<Transfer> t);
  void finish(Transfer* t, int curl_code);

  HttpOptions opt_;
  Url scope_;
  void* multi_ = nullptr;  // CURLM*
  mutable std::mutex mu_;
  std::condition_variable results_cv_;
  std::condition_variable space_cv_;
  std::deque<std::unique_ptr<Transfer>> queue_;
  std::deque<FetchResult> results_;
  std::vector<std::unique_ptr<Transfer>> running_;
  std::vector<void*> idle_handles_;  // CURL* kept for reuse
  std::int64_t outstanding_ = 0;
  bool closed_ = false;
  bool stop_ = false;
  bool done_ = false;
  std::atomic<std::int64_t> bytes_{0};
  std::thread thread_;
};

}  // namespace incept::data

// Concurrent HTTP GETs on one thread with libcurl's multi interface: many transfers in
// flight, keep-alive connections reused, timeouts for connect, whole transfer and stalls (no
// byte for N seconds), a body size cap, redirects followed by hand only inside the crawl's
// scope, and a bounded number of outstanding requests and undelivered results so memory
// stays flat whatever the dataset size.
//
// Concurrency per host adapts (data/host_pacer.h): each scheme://host:port has its own queue
// and a limit that starts at start_per_host, grows while the host answers promptly and
// drops when it does not; max_per_host and max_in_flight are ceilings. Transfers are handed
// to curl only when their host has a free slot, so curl never holds more than the limit.
// A watchdog abandons an attempt whose connect, or whose first response byte, takes far
// longer than the host's usual (a dropped SYN or handshake ACK in a full listen queue would
// otherwise wait for TCP's 1 s / 3 s / 7 s retransmissions) and queues it again at the front
// with a fresh connection, up to three times, each time allowing twice as long. HTTP 503 and
// 429 pause the host for Retry-After (0.5 s if absent) and are retried up to three times.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/host_pacer.h"
#include "data/url.h"

namespace incept::data {

struct HttpOptions {
  int max_in_flight = 64;     // concurrent transfers, all hosts together (ceiling)
  int max_per_host = 32;      // ceiling of the adaptive per-host limit
  int start_per_host = 4;     // the per-host limit's first value
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
  // How one host was paced so far.
  struct HostStats {
    std::string host;               // scheme://host:port
    HostPacer pacer;                // its state; pacer.stats() for the numbers
    std::int64_t abandoned = 0;     // attempts the watchdog cut and queued again
    std::int64_t busy_retries = 0;  // 503/429 answers queued again
  };

  // Redirects are followed only to URLs within `scope` (same host/port, under its path).
  // `learned`: an earlier fetcher's host_stats() (the crawl's, for the downloads), so known
  // hosts continue at the pace found there instead of starting over.
  HttpFetcher(HttpOptions opt, Url scope, const std::vector<HostStats>& learned = {});
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

  // How each host was paced so far (safe to call from any thread).
  std::vector<HostStats> host_stats() const;

  struct Transfer;  // one request's state (internal; public for libcurl's C callbacks)
  struct Host;      // one host's queue and pacer (internal)

 private:
  void loop();
  Host& host(const std::string& key);
  void enqueue(std::unique_ptr<Transfer> t, bool front);
  void mark_ready(Host& h);
  void start_ready(std::chrono::steady_clock::time_point now);
  void start(std::unique_ptr<Transfer> t);
  std::unique_ptr<Transfer> take_running(Transfer* t);
  void retry(std::unique_ptr<Transfer> t);
  void finish(Transfer* t, int curl_code);
  void deliver(std::unique_ptr<Transfer> t, FetchResult r);  // frees the slot, hands r to next()
  void watchdog(std::chrono::steady_clock::time_point now);
  int poll_timeout_ms(std::chrono::steady_clock::time_point now) const;
  void publish(Host& h);

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
  // Loop thread only: per-host queues and pacers, hosts that may start a transfer (each at
  // most once), hosts paused by Retry-After, and how many transfers wait in host queues.
  std::map<std::string, std::unique_ptr<Host>> hosts_;
  std::deque<Host*> ready_;
  std::vector<Host*> parked_;
  std::int64_t waiting_ = 0;
  std::chrono::steady_clock::time_point last_watchdog_{};
  mutable std::mutex stats_mu_;
  std::map<std::string, HostStats> published_;
  std::int64_t outstanding_ = 0;
  bool closed_ = false;
  bool stop_ = false;
  bool done_ = false;
  std::atomic<std::int64_t> bytes_{0};
  std::thread thread_;
};

// One line for logs: the connections a host reached, its back-offs and connect times.
std::string describe(const HttpFetcher::HostStats& s);

}  // namespace incept::data

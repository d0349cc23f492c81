// libcurl multi-interface fetcher (http_fetcher.h).
#include "data/http_fetcher.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "engine/check.h"

namespace incept::data {

struct HttpFetcher::Transfer {
  CURL* easy = nullptr;
  std::uint64_t tag = 0;
  std::string url;                 // as submitted
  std::string current;             // the URL being fetched now (after redirects)
  std::vector<std::string> chain;  // redirect history, for loop detection
  std::string body;
  bool too_large = false;
  bool stalled = false;
  std::chrono::steady_clock::time_point last_data;  // start, or the last byte received
  double stall_s = 0;
  int attempt = 1;
  std::int64_t max_bytes = 0;
  std::atomic<std::int64_t>* bytes = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
};

namespace {

std::once_flag g_curl_once;

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<HttpFetcher::Transfer*>(user);
  const std::size_t len = size * n;
  if (std::int64_t(t->body.size() + len) > t->max_bytes) {
    t->too_large = true;
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  if (t->body.empty()) {  // one allocation for the whole body instead of a doubling string
    curl_off_t expected = -1;
    if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected) == CURLE_OK &&
        expected > 0 && expected <= t->max_bytes)
      t->body.reserve(std::size_t(expected));
  }
  t->body.append(data, len);
  t->last_data = std::chrono::steady_clock::now();
  t->bytes->fetch_add(std::int64_t(len), std::memory_order_relaxed);
  return len;
}

// Called by libcurl about once a second per transfer: abort when no byte came for stall_s.
// (CURLOPT_LOW_SPEED_* averages over a window, so a body that stops after a few bytes would
// only be cut by the whole-transfer timeout.)
int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<HttpFetcher::Transfer*>(user);
  // Connecting (and waiting for a free connection) is bounded by the connect timeout; the
  // stall clock starts once the request is on the wire.
  curl_off_t pretransfer = 0;
  curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
  if (pretransfer == 0) {
    t->last_data = std::chrono::steady_clock::now();
    return 0;
  }
  const double idle = std::chrono::duration<double>(std::chrono::steady_clock::now() - t->last_data).count();
  if (idle > t->stall_s) {
    t->stalled = true;
    return 1;
  }
  return 0;
}

bool transient(int code) {
  return code == CURLE_COULDNT_CONNECT || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
         code == CURLE_GOT_NOTHING;
}

}  // namespace

HttpFetcher::HttpFetcher(HttpOptions opt, Url scope) : opt_(opt), scope_(std::move(scope)) {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURLM* m = curl_multi_init();
  if (!m) throw Error("libcurl: curl_multi_init failed");
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, long(opt_.max_per_host));
  curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, long(opt_.max_in_flight));
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, long(opt_.max_in_flight));
  multi_ = m;
  thread_ = std::thread([this] { loop(); });
}

HttpFetcher::~HttpFetcher() {
  abort();
  if (thread_.joinable()) thread_.join();
  for (auto& t : running_) {
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
    curl_easy_cleanup(t->easy);
  }
  for (void* e : idle_handles_) curl_easy_cleanup(static_cast<CURL*>(e));
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void HttpFetcher::submit(std::string url, std::uint64_t tag, bool block) {
  auto t = std::make_unique<Transfer>();
  t->tag = tag;
  t->current = url;
  t->url = std::move(url);
  t->max_bytes = opt_.max_bytes;
  t->bytes = &bytes_;
  {
    std::unique_lock lock(mu_);
    if (block) space_cv_.wait(lock, [&] { return outstanding_ < opt_.max_outstanding || stop_; });
    if (stop_) return;
    ++outstanding_;
    queue_.push_back(std::move(t));
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

bool HttpFetcher::next(FetchResult* out) {
  {
    std::unique_lock lock(mu_);
    results_cv_.wait(lock, [&] { return !results_.empty() || done_ || stop_; });
    if (results_.empty() || stop_) return false;
    *out = std::move(results_.front());
    results_.pop_front();
    --outstanding_;
  }
  space_cv_.notify_one();
  curl_multi_wakeup(static_cast<CURLM*>(multi_));  // room for results: start more transfers
  return true;
}

void HttpFetcher::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

void HttpFetcher::abort() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    closed_ = true;
  }
  results_cv_.notify_all();
  space_cv_.notify_all();
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

std::int64_t HttpFetcher::outstanding() const {
  std::lock_guard lock(mu_);
  return outstanding_;
}

void HttpFetcher::start(std::unique_ptr<Transfer> t) {
  CURL* e;
  if (t->easy) {
    e = t->easy;
  } else if (!idle_handles_.empty()) {
    e = static_cast<CURL*>(idle_handles_.back());
    idle_handles_.pop_back();
  } else {
    e = curl_easy_init();
  }
  curl_easy_reset(e);
  t->easy = e;
  t->body.clear();
  t->too_large = false;
  t->errbuf[0] = 0;
  curl_easy_setopt(e, CURLOPT_URL, t->current.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, long(opt_.connect_timeout_s * 1000));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, long(opt_.timeout_s * 1000));
  t->stalled = false;
  t->stall_s = std::max(0.5, opt_.stall_timeout_s);
  t->last_data = std::chrono::steady_clock::now();
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, t.get());
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(opt_.max_bytes));
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // listings may come gzipped
  curl_easy_setopt(e, CURLOPT_USERAGENT, "incept-imagenet-ingest/0.1");
  curl_multi_add_handle(static_cast<CURLM*>(multi_), e);
  running_.push_back(std::move(t));
}

void HttpFetcher::finish(Transfer* raw, int code) {
  auto it = std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == raw; });
  std::unique_ptr<Transfer> t = std::move(*it);
  running_.erase(it);
  CURL* e = t->easy;
  curl_multi_remove_handle(static_cast<CURLM*>(multi_), e);

  FetchResult r;
  r.tag = t->tag;
  r.url = t->url;
  r.final_url = t->current;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
  if (const char* ct = nullptr; curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
    r.content_type = ct;

  if (code == CURLE_OK && r.status >= 300 && r.status < 400) {
    const char* loc = nullptr;
    curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc);
    const auto target = loc ? parse_url(loc) : std::nullopt;
    t->chain.push_back(t->current);
    if (!target) {
      r.error = fmt::format("HTTP {} redirect without a usable Location", r.status);
    } else if (!url_within(*target, scope_)) {
      r.error =
          fmt::format("redirect to {} leaves the start URL {} (not followed)", target->str(), scope_.str());
    } else if (std::find(t->chain.begin(), t->chain.end(), target->str()) != t->chain.end()) {
      r.error = fmt::format("redirect loop ({} -> {})", t->current, target->str());
    } else if (int(t->chain.size()) > opt_.max_redirects) {
      r.error = fmt::format("more than {} redirects", opt_.max_redirects);
    } else {
      t->current = target->str();
      start(std::move(t));  // same handle, the new URL
      return;
    }
  } else if (code != CURLE_OK) {
    if (transient(code) && t->attempt < opt_.attempts) {
      ++t->attempt;
      start(std::move(t));
      return;
    }
    if (t->too_large || code == CURLE_FILESIZE_EXCEEDED)
      r.error = fmt::format("larger than {} MiB (--max-download-mb)", opt_.max_bytes >> 20);
    else if (t->stalled)
      r.error = fmt::format("timed out: stalled, no data for {:.0f} s (--stall-timeout), {} bytes received",
                            t->stall_s, t->body.size());
    else if (code == CURLE_OPERATION_TIMEDOUT)
      r.error = fmt::format("timed out ({})", t->errbuf[0] ? t->errbuf : "no data");
    else
      r.error = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(CURLcode(code)));
    if (code == CURLE_PARTIAL_FILE) r.error = "truncated download: " + r.error;
  } else if (r.status < 200 || r.status >= 300) {
    r.error = fmt::format("HTTP {}", r.status);
  }
  if (r.ok()) r.body = std::move(t->body);
  idle_handles_.push_back(e);
  {
    std::lock_guard lock(mu_);
    results_.push_back(std::move(r));
  }
  results_cv_.notify_one();
}

void HttpFetcher::loop() {
  CURLM* m = static_cast<CURLM*>(multi_);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (stop_) break;
      // Start queued transfers while below the in-flight cap; results waiting to be taken
      // count against max_outstanding already (submit blocks), so memory stays bounded.
      while (!queue_.empty() && int(running_.size()) < opt_.max_in_flight) {
        auto t = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        start(std::move(t));
        lock.lock();
      }
      if (closed_ && queue_.empty() && running_.empty()) {
        done_ = true;
        break;
      }
    }
    int still = 0;
    curl_multi_perform(m, &still);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      finish(t, msg->data.result);
    }
    curl_multi_poll(m, nullptr, 0, 200, nullptr);
  }
  results_cv_.notify_all();
  space_cv_.notify_all();
}

}  // namespace incept::data

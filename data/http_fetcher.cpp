// libcurl multi-interface fetcher (http_fetcher.h).
#include "data/http_fetcher.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "engine/check.h"
#include "engine/log.h"

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
  int attempt = 1;       // connection-level failures (HttpOptions::attempts)
  int abandoned = 0;     // attempts cut by the watchdog
  int busy_retries = 0;  // 503/429 answers
  std::string host_key;  // scheme://host:port
  Host* host = nullptr;
  std::chrono::steady_clock::time_point attempt_start;
  bool receiving = false;  // the first response byte arrived (the watchdog is done with it)
  std::int64_t max_bytes = 0;
  std::atomic<std::int64_t>* bytes = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
};

struct HttpFetcher::Host {
  std::string key;
  HostPacer pacer;
  std::deque<std::unique_ptr<Transfer>> queue;
  bool listed = false;  // in ready_
  bool parked = false;  // in parked_ (paused)
  std::int64_t abandoned = 0;
  std::int64_t busy_retries = 0;
  int published_limit = 0;
  int stuck_connects = 0;  // the watchdog's count of this host's stalled connects now
  int accepted = 0;        // in flight minus those
};

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxAbandons = 3;      // watchdog cuts per transfer, then only the timeouts apply
constexpr int kMaxBusyRetries = 3;   // 503/429 answers queued again per transfer
constexpr double kBusyPauseS = 0.5;  // host pause after 503/429 without Retry-After
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(20);
constexpr double kConnectGraceS = 2;  // past --connect-timeout, the watchdog fails an attempt

std::once_flag g_curl_once;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string host_key_of(const std::string& url) {
  const auto u = parse_url(url);
  return u ? fmt::format("{}://{}:{}", u->scheme, u->host, u->port) : std::string("(unparsed)");
}

// What a finished attempt says about its host (times from curl, microseconds).
HostPacer::Sample sample_of(CURL* e) {
  HostPacer::Sample s;
  long connects = 0;
  curl_off_t pre = 0, first = 0;
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
  curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &first);
  s.new_connection = connects > 0;
  s.connect_s = double(pre) * 1e-6;  // DNS + TCP + TLS: ready to send
  s.first_byte_s = pre > 0 && first >= pre ? double(first - pre) * 1e-6 : -1;
  return s;
}

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

HttpFetcher::HttpFetcher(HttpOptions opt, Url scope, const std::vector<HostStats>& learned)
    : opt_(opt), scope_(std::move(scope)) {
  for (const HostStats& s : learned) {
    Host& h = host(s.host);
    h.pacer = s.pacer.continued(opt_.max_per_host);
    h.published_limit = h.pacer.limit();
    publish(h);
  }
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURLM* m = curl_multi_init();
  if (!m) throw Error("libcurl: curl_multi_init failed");
  // The host queues hand curl at most a host's limit (<= max_per_host) and max_in_flight in
  // all, so curl needs no connection limits of its own; with them, a transfer curl parks
  // waiting for a connection slot would sit outside every timeout (libcurl before 8.8 runs
  // none in that state). The cache keeps up to max_in_flight idle connections for reuse.
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
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
  for (auto& [key, h] : hosts_)
    for (auto& t : h->queue)
      if (t->easy) curl_easy_cleanup(t->easy);  // abandoned or retried attempts keep theirs
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
  t->host_key = host_key_of(t->url);
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
  t->last_data = Clock::now();
  t->attempt_start = t->last_data;
  t->receiving = false;
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

std::unique_ptr<HttpFetcher::Transfer> HttpFetcher::take_running(Transfer* raw) {
  auto it = std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == raw; });
  std::unique_ptr<Transfer> t = std::move(*it);
  running_.erase(it);
  curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
  return t;
}

// The attempt's slot is free; the transfer goes to the front of its host's queue and starts
// again (on a new connection unless curl has an idle one) when the host has room.
void HttpFetcher::retry(std::unique_ptr<Transfer> t) {
  Host& h = *t->host;
  h.pacer.finished();
  enqueue(std::move(t), true);
  publish(h);
}

void HttpFetcher::finish(Transfer* raw, int code) {
  std::unique_ptr<Transfer> t = take_running(raw);
  CURL* e = t->easy;
  Host& h = *t->host;
  const auto now = Clock::now();
  // More work for this host than slots: only then may a clean answer raise the limit.
  const bool demand = !h.queue.empty() || h.pacer.active() >= h.pacer.limit();

  FetchResult r;
  r.tag = t->tag;
  r.url = t->url;
  r.final_url = t->current;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
  if (const char* ct = nullptr; curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
    r.content_type = ct;

  if (code == CURLE_OK && (r.status == 503 || r.status == 429)) {
    // The server says it is overloaded (or rate-limits us): fewer connections, a pause.
    h.pacer.on_congestion(Congestion::kBusy, t->attempt_start, now);
    curl_off_t after = -1;
    curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &after);
    h.pacer.pause(after > 0 ? double(after) : kBusyPauseS, now);
    if (t->busy_retries < kMaxBusyRetries) {
      ++t->busy_retries;
      ++h.busy_retries;
      log_debug("http {}: HTTP {}, retrying after a pause (limit now {})", t->current, r.status,
                h.pacer.limit());
      retry(std::move(t));
      return;
    }
  } else if (code == CURLE_OK) {
    h.pacer.on_complete(sample_of(e), t->attempt_start, now, demand);
  } else {
    curl_off_t pre = 0;
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
    if (code == CURLE_COULDNT_CONNECT || (code == CURLE_OPERATION_TIMEDOUT && pre == 0))
      h.pacer.on_congestion(Congestion::kConnectFailed, t->attempt_start, now);
  }

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
      t->current = target->str();  // same scheme, host and port (url_within): it keeps its slot
      publish(h);
      start(std::move(t));
      return;
    }
  } else if (code != CURLE_OK) {
    if (transient(code) && t->attempt < opt_.attempts) {
      ++t->attempt;
      retry(std::move(t));
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
  deliver(std::move(t), std::move(r));
}

void HttpFetcher::deliver(std::unique_ptr<Transfer> t, FetchResult r) {
  Host& h = *t->host;
  idle_handles_.push_back(t->easy);
  h.pacer.finished();
  mark_ready(h);
  publish(h);
  {
    std::lock_guard lock(mu_);
    results_.push_back(std::move(r));
  }
  results_cv_.notify_one();
}

HttpFetcher::Host& HttpFetcher::host(const std::string& key) {
  auto& slot = hosts_[key];
  if (!slot) {
    slot = std::make_unique<Host>();
    slot->key = key;
    PacerOptions po;
    po.start = opt_.start_per_host;
    po.ceiling = opt_.max_per_host;
    slot->pacer = HostPacer(po);
    slot->published_limit = slot->pacer.limit();
    publish(*slot);
  }
  return *slot;
}

void HttpFetcher::enqueue(std::unique_ptr<Transfer> t, bool front) {
  Host& h = host(t->host_key);
  t->host = &h;
  if (front)
    h.queue.push_front(std::move(t));
  else
    h.queue.push_back(std::move(t));
  ++waiting_;
  mark_ready(h);
}

void HttpFetcher::mark_ready(Host& h) {
  if (h.listed || h.parked || h.queue.empty()) return;
  h.listed = true;
  ready_.push_back(&h);
}

// Hands queued transfers to curl, one per host in turn, while hosts have free slots and the
// total stays under max_in_flight. A host at its limit leaves ready_ until a slot frees.
void HttpFetcher::start_ready(Clock::time_point now) {
  for (auto it = parked_.begin(); it != parked_.end();) {
    Host* h = *it;
    if (now < h->pacer.paused_until()) {
      ++it;
      continue;
    }
    h->parked = false;
    mark_ready(*h);
    it = parked_.erase(it);
  }
  while (!ready_.empty() && int(running_.size()) < opt_.max_in_flight) {
    Host* h = ready_.front();
    ready_.pop_front();
    h->listed = false;
    if (h->queue.empty() || h->pacer.active() >= h->pacer.limit()) continue;
    if (now < h->pacer.paused_until()) {
      h->parked = true;
      parked_.push_back(h);
      continue;
    }
    std::unique_ptr<Transfer> t = std::move(h->queue.front());
    h->queue.pop_front();
    --waiting_;
    h->pacer.started();
    start(std::move(t));
    mark_ready(*h);
  }
}

// Cuts attempts stuck before their first response byte for far longer than their host's
// usual: a connect whose SYN (or handshake ACK) a full listen queue dropped, or a request
// that sits unanswered. The attempt is a congestion signal and is queued again at the front;
// each cut of the same transfer doubles its allowance, and after kMaxAbandons (or once the
// allowance reaches the user's connect or stall timeout) only those timeouts apply. An
// attempt still not connected well past --connect-timeout fails here, whatever curl thinks.
void HttpFetcher::watchdog(Clock::time_point now) {
  if (now - last_watchdog_ < kWatchdogPeriod) return;
  last_watchdog_ = now;
  std::vector<std::pair<Transfer*, Congestion>> stuck;
  std::vector<Transfer*> overdue;
  for (auto& t : running_) t->host->stuck_connects = 0;
  for (auto& t : running_) {
    if (t->receiving) continue;
    curl_off_t pre = 0, first = 0;
    curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
    curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &first);
    if (first > 0) {
      t->receiving = true;
      continue;
    }
    const double elapsed = seconds_between(t->attempt_start, now);
    // curl's connect timeout should have ended it; never let an attempt wait forever.
    if (pre == 0 && elapsed > opt_.connect_timeout_s + kConnectGraceS) {
      overdue.push_back(t.get());
      continue;
    }
    if (t->abandoned >= kMaxAbandons) continue;
    const double scale = double(1 << t->abandoned);
    if (pre == 0) {
      const double allowed = t->host->pacer.connect_stall_s() * scale;
      if (allowed < opt_.connect_timeout_s && elapsed > allowed) {
        stuck.emplace_back(t.get(), Congestion::kSlowConnect);
        ++t->host->stuck_connects;
      }
    } else {
      const double allowed = t->host->pacer.first_byte_stall_s() * scale;
      if (allowed < t->stall_s && elapsed - double(pre) * 1e-6 > allowed)
        stuck.emplace_back(t.get(), Congestion::kSlowFirstByte);
    }
  }
  // Connects that stall while others got through: the server's queue took the others.
  for (auto [raw, why] : stuck) raw->host->accepted = raw->host->pacer.active() - raw->host->stuck_connects;
  for (auto [raw, why] : stuck) {
    std::unique_ptr<Transfer> t = take_running(raw);
    Host& h = *t->host;
    ++t->abandoned;
    ++h.abandoned;
    h.pacer.on_congestion(why, t->attempt_start, now, why == Congestion::kSlowConnect ? h.accepted : -1);
    log_debug("http {}: {} after {:.2f} s, trying again (limit now {})", t->current, congestion_name(why),
              seconds_between(t->attempt_start, now), h.pacer.limit());
    retry(std::move(t));
  }
  for (Transfer* raw : overdue) {
    std::unique_ptr<Transfer> t = take_running(raw);
    t->host->pacer.on_congestion(Congestion::kConnectFailed, t->attempt_start, now);
    FetchResult r;
    r.tag = t->tag;
    r.url = t->url;
    r.final_url = t->current;
    r.error =
        fmt::format("timed out: no connection after {:.0f} s (--connect-timeout)", opt_.connect_timeout_s);
    deliver(std::move(t), std::move(r));
  }
}

int HttpFetcher::poll_timeout_ms(Clock::time_point now) const {
  // Attempts the watchdog may have to cut: look again soon. Otherwise curl's own timers and
  // wakeups (submit, next) end the wait.
  int ms = 200;
  for (const auto& t : running_)
    if (!t->receiving) {
      ms = 2 * int(kWatchdogPeriod.count());
      break;
    }
  for (const Host* h : parked_)
    ms = std::min(ms, 1 + int(std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                            h->pacer.paused_until() - now)
                                                            .count())));
  return ms;
}

void HttpFetcher::publish(Host& h) {
  if (h.pacer.limit() != h.published_limit) {
    log_debug("http {}: {} connections at most now (peak so far {}, ceiling {})", h.key, h.pacer.limit(),
              h.pacer.stats().peak_active, opt_.max_per_host);
    h.published_limit = h.pacer.limit();
  }
  std::lock_guard lock(stats_mu_);
  HostStats& s = published_[h.key];
  s.host = h.key;
  s.pacer = h.pacer;
  s.abandoned = h.abandoned;
  s.busy_retries = h.busy_retries;
}

std::vector<HttpFetcher::HostStats> HttpFetcher::host_stats() const {
  std::lock_guard lock(stats_mu_);
  std::vector<HostStats> out;
  for (const auto& [key, s] : published_) out.push_back(s);
  return out;
}

std::string describe(const HttpFetcher::HostStats& s) {
  const HostPacer::Stats& p = s.pacer.stats();
  std::string out =
      fmt::format("{}: up to {} connections at once (ceiling {}), ", s.host, p.peak_active, p.ceiling);
  if (p.decreases == 0) {
    out += "never backed off";
  } else {
    out += fmt::format("backed off {} times, {} at the end (signals: {} {}, {} {}, {} {}, {} {})",
                       p.decreases, p.limit, p.signals[0], congestion_name(Congestion(0)), p.signals[1],
                       congestion_name(Congestion(1)), p.signals[2], congestion_name(Congestion(2)),
                       p.signals[3], congestion_name(Congestion(3)));
  }
  if (s.abandoned) out += fmt::format(", {} stuck attempts retried", s.abandoned);
  if (s.busy_retries) out += fmt::format(", {} busy answers retried", s.busy_retries);
  if (p.connect_baseline_s > 0)
    out += fmt::format("; connect {:.1f} ms usually, {:.0f} ms at most", p.connect_baseline_s * 1e3,
                       p.max_connect_s * 1e3);
  return out;
}

void HttpFetcher::loop() {
  CURLM* m = static_cast<CURLM*>(multi_);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (stop_) break;
      // New submissions go to their host's queue; results waiting to be taken count against
      // max_outstanding already (submit blocks), so memory stays bounded.
      while (!queue_.empty()) {
        std::unique_ptr<Transfer> t = std::move(queue_.front());
        queue_.pop_front();
        enqueue(std::move(t), false);
      }
      if (closed_ && waiting_ == 0 && running_.empty()) {
        done_ = true;
        break;
      }
    }
    start_ready(Clock::now());
    int still = 0;
    curl_multi_perform(m, &still);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      finish(t, msg->data.result);
    }
    const auto now = Clock::now();
    watchdog(now);
    // A slot freed above (a host listed again) starts its next transfer now, not after the
    // next socket event: with a few connections per host that wait would cost throughput.
    if (!ready_.empty() && int(running_.size()) < opt_.max_in_flight) continue;
    curl_multi_poll(m, nullptr, 0, poll_timeout_ms(now), nullptr);
  }
  results_cv_.notify_all();
  space_cv_.notify_all();
}

}  // namespace incept::data

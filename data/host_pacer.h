// HostPacer: how many transfers the crawler keeps in flight to one host, adapted to what the
// host sustains. Why: a small server (Python's http.server: one accept loop, listen backlog 5)
// cannot take 32 connection attempts at once; the kernel drops the SYNs (or the handshake's
// last ACK) that do not fit its accept queue, and each dropped attempt waits for TCP's
// retransmission (1 s, 3 s, 7 s, ...). A fixed per-host count is either too timid for nginx
// or too much for http.server, so the limit is found per host, like TCP's congestion window:
//
//  - it starts at PacerOptions::start (4) and grows by one for every clean completion while
//    there is more work for the host than slots (slow start: doubling per round trip), up to
//    the ceiling (--per-host), so a server that keeps up reaches the ceiling within a few
//    dozen requests;
//  - a congestion signal halves it, or cuts it to the attempts that got through when connects
//    stall (what the server's accept queue took), once per episode: only an attempt started
//    after the last decrease can cause another; signals are a connect far slower than the host's usual one
//    (or one abandoned by the fetcher's watchdog), a response whose first byte is far later
//    than usual, a refused or timed-out connect, and HTTP 503/429 (which also pause the host
//    for Retry-After);
//  - after the first signal the limit grows by one at most once per probe interval (0.5 s,
//    doubling each time the host congests again at the same level, up to 16 s), so a server
//    is crawled at its own pace with rare, cheap probes above it.
//
// "Far slower" is relative to the host's own baseline (an average of its clean connect and
// first-byte times) with absolute floors, so a distant host is not mistaken for a stalled
// one. The pacer is pure logic with the clock passed in (test_host_pacer drives it with
// made-up times); HttpFetcher owns one per scheme://host:port and does the I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

namespace incept::data {

struct PacerOptions {
  int start = 4;                          // first limit (clamped to [1, ceiling])
  int ceiling = 32;                       // --per-host
  double connect_stall_floor_s = 0.25;    // a connect slower than max(floor, factor x baseline)
  double connect_stall_factor = 8;        // is a stall
  double unknown_connect_stall_s = 1.0;   // before the first connect was measured
  double first_byte_stall_floor_s = 1.0;  // same for request sent -> first response byte
  double first_byte_stall_factor = 16;
  int first_byte_min_samples = 8;    // no first-byte judgement before this many clean samples
  double decrease = 0.5;             // limit x this on congestion
  double probe_interval_s = 0.5;     // after congestion: +1 at most this often...
  double max_probe_interval_s = 16;  // ...doubling while the host congests at the same level
  double max_pause_s = 30;           // cap on a Retry-After pause
};

// Why a limit went down (counted per kind in HostPacer::Stats).
enum class Congestion {
  kSlowConnect,    // connect (TCP + TLS) took longer than connect_stall_s()
  kSlowFirstByte,  // request sent, first response byte later than first_byte_stall_s()
  kConnectFailed,  // refused, reset during connect, or the connect timeout
  kBusy,           // HTTP 503 or 429
};

class HostPacer {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // One finished attempt as the host answered it.
  struct Sample {
    bool new_connection = false;  // false: a kept-alive connection was reused
    double connect_s = 0;         // start -> ready to send (DNS, TCP, TLS); new connections only
    double first_byte_s = -1;     // request sent -> first response byte; < 0: unknown
  };

  struct Stats {
    int limit = 0;
    int ceiling = 0;
    int peak_active = 0;  // most transfers this host had in flight at once
    std::int64_t completions = 0;
    std::int64_t decreases = 0;
    std::int64_t signals[4] = {};   // per Congestion kind, including those within an episode
    double connect_baseline_s = 0;  // 0: not measured yet
    double first_byte_baseline_s = 0;
    double max_connect_s = 0;  // slowest completed connect seen
  };

  explicit HostPacer(PacerOptions opt = {});

  // A slot is free and the host is not paused.
  bool can_start(TimePoint now) const { return active_ < limit_ && now >= paused_until_; }
  TimePoint paused_until() const { return paused_until_; }
  int limit() const { return limit_; }
  int active() const { return active_; }
  void started();
  void finished();  // the slot of a started attempt is free again (any outcome)

  // Thresholds for a running attempt's watchdog (seconds); infinity when not judged yet.
  double connect_stall_s() const;
  double first_byte_stall_s() const;

  // A completed attempt (any HTTP status). Slow parts count as congestion; a clean one moves
  // the baselines and, when `demand` (more work than slots for this host), raises the limit.
  void on_complete(const Sample& s, TimePoint attempt_start, TimePoint now, bool demand);
  // A congestion signal from an attempt that started at attempt_start. `accepted`, when
  // known (>= 0), is how many of the host's attempts got through their connect at that
  // moment: when connects stall, that is what the server's queue took, and the limit drops
  // to it at once instead of halving step by step.
  void on_congestion(Congestion why, TimePoint attempt_start, TimePoint now, int accepted = -1);
  // No new attempts before now + seconds (Retry-After), capped at max_pause_s.
  void pause(double seconds, TimePoint now);

  const Stats& stats() const { return stats_; }

  // A pacer for a new run against the same host (the downloads after the crawl): what was
  // learned (limit, slow start or probing, baselines) without the in-flight count, the pause
  // or the counters. The ceiling may differ.
  HostPacer continued(int ceiling) const;

 private:
  void grow(TimePoint now);

  PacerOptions opt_;
  int limit_ = 1;
  int active_ = 0;
  int slow_start_until_ = 0;   // ssthresh: grow per completion below it
  int last_congested_at_ = 0;  // the limit when the last decrease happened
  double probe_interval_s_ = 0;
  TimePoint next_probe_{};
  TimePoint last_decrease_{};
  bool decreased_ = false;
  TimePoint paused_until_{};
  double connect_avg_s_ = 0;  // exponential averages of clean samples
  std::int64_t connect_samples_ = 0;
  double first_byte_avg_s_ = 0;
  std::int64_t first_byte_samples_ = 0;
  Stats stats_;
};

const char* congestion_name(Congestion c);

}  // namespace incept::data

// Per-host adaptive concurrency (host_pacer.h).
#include "data/host_pacer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace incept::data {
namespace {

constexpr double kAverageWeight = 1.0 / 8;  // weight of a new sample in the baselines

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

void average_in(double x, double* avg, std::int64_t* n) {
  *avg = *n == 0 ? x : *avg + kAverageWeight * (x - *avg);
  ++*n;
}

}  // namespace

const char* congestion_name(Congestion c) {
  switch (c) {
    case Congestion::kSlowConnect:
      return "slow connect";
    case Congestion::kSlowFirstByte:
      return "slow first byte";
    case Congestion::kConnectFailed:
      return "connect failed";
    case Congestion::kBusy:
      return "HTTP 503/429";
  }
  return "?";
}

HostPacer::HostPacer(PacerOptions opt) : opt_(opt) {
  opt_.ceiling = std::max(1, opt_.ceiling);
  limit_ = std::clamp(opt_.start, 1, opt_.ceiling);
  slow_start_until_ = opt_.ceiling;
  probe_interval_s_ = opt_.probe_interval_s;
  stats_.limit = limit_;
  stats_.ceiling = opt_.ceiling;
}

void HostPacer::started() {
  ++active_;
  stats_.peak_active = std::max(stats_.peak_active, active_);
}

void HostPacer::finished() {
  active_ = std::max(0, active_ - 1);
}

double HostPacer::connect_stall_s() const {
  if (connect_samples_ == 0) return opt_.unknown_connect_stall_s;
  return std::max(opt_.connect_stall_floor_s, opt_.connect_stall_factor * connect_avg_s_);
}

double HostPacer::first_byte_stall_s() const {
  if (first_byte_samples_ < opt_.first_byte_min_samples) return std::numeric_limits<double>::infinity();
  return std::max(opt_.first_byte_stall_floor_s, opt_.first_byte_stall_factor * first_byte_avg_s_);
}

void HostPacer::on_complete(const Sample& s, TimePoint attempt_start, TimePoint now, bool demand) {
  ++stats_.completions;
  if (s.new_connection) {
    stats_.max_connect_s = std::max(stats_.max_connect_s, s.connect_s);
    if (connect_samples_ > 0 && s.connect_s > connect_stall_s()) {
      on_congestion(Congestion::kSlowConnect, attempt_start, now);
      return;
    }
  }
  if (s.first_byte_s >= 0 && s.first_byte_s > first_byte_stall_s()) {
    on_congestion(Congestion::kSlowFirstByte, attempt_start, now);
    return;
  }
  if (s.new_connection) average_in(s.connect_s, &connect_avg_s_, &connect_samples_);
  if (s.first_byte_s >= 0) average_in(s.first_byte_s, &first_byte_avg_s_, &first_byte_samples_);
  stats_.connect_baseline_s = connect_samples_ ? connect_avg_s_ : 0;
  stats_.first_byte_baseline_s = first_byte_samples_ ? first_byte_avg_s_ : 0;
  if (demand) grow(now);
}

void HostPacer::grow(TimePoint now) {
  if (limit_ >= opt_.ceiling) return;
  if (limit_ < slow_start_until_) {
    ++limit_;
  } else if (now >= next_probe_) {
    ++limit_;
    next_probe_ = now + seconds(probe_interval_s_);
  }
  stats_.limit = limit_;
}

void HostPacer::on_congestion(Congestion why, TimePoint attempt_start, TimePoint now, int accepted) {
  ++stats_.signals[int(why)];
  // A slow connect means nothing before we know how fast this host's connects usually are.
  if (why == Congestion::kSlowConnect && connect_samples_ == 0) return;
  // Attempts that were already under way when the limit went down belong to the same
  // episode: one decrease per episode, as TCP does per window.
  if (decreased_ && attempt_start < last_decrease_) return;
  const int was = limit_;
  int next = int(std::floor(limit_ * opt_.decrease));
  if (accepted >= 0) next = std::min(next, accepted);
  limit_ = std::max(1, next);
  slow_start_until_ = limit_;
  // Congesting again near the level of the last decrease: the host's capacity is there, so
  // probe above it less and less often. A new level (better or worse) starts over.
  const bool same_level =
      decreased_ && std::abs(was - last_congested_at_) <= std::max(1, last_congested_at_ / 4);
  probe_interval_s_ =
      same_level ? std::min(2 * probe_interval_s_, opt_.max_probe_interval_s) : opt_.probe_interval_s;
  last_congested_at_ = was;
  last_decrease_ = now;
  decreased_ = true;
  next_probe_ = now + seconds(probe_interval_s_);
  ++stats_.decreases;
  stats_.limit = limit_;
}

HostPacer HostPacer::continued(int ceiling) const {
  HostPacer p = *this;
  p.opt_.ceiling = std::max(1, ceiling);
  p.limit_ = std::min(limit_, p.opt_.ceiling);
  p.slow_start_until_ = std::min(slow_start_until_, p.opt_.ceiling);
  p.active_ = 0;
  p.paused_until_ = TimePoint{};
  p.stats_ = Stats{};
  p.stats_.limit = p.limit_;
  p.stats_.ceiling = p.opt_.ceiling;
  p.stats_.connect_baseline_s = stats_.connect_baseline_s;
  p.stats_.first_byte_baseline_s = stats_.first_byte_baseline_s;
  return p;
}

void HostPacer::pause(double s, TimePoint now) {
  const TimePoint until = now + seconds(std::clamp(s, 0.0, opt_.max_pause_s));
  paused_until_ = std::max(paused_until_, until);
}

}  // namespace incept::data

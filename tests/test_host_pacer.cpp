// HostPacer, the per-host concurrency limit of the crawler, driven with made-up times: slow
// start to the ceiling only while there is demand, one decrease per congestion episode, the
// drop to what the server accepted, slow probing afterwards (slower each time the host
// congests at the same level), stall thresholds relative to the host's own baseline, pauses,
// and carrying the state from the crawl to the downloads.
#include <gtest/gtest.h>

#include <cmath>

#include "data/host_pacer.h"

namespace incept::data {
namespace {

using Clock = HostPacer::Clock;
using std::chrono::milliseconds;

const Clock::time_point t0 = Clock::now();
Clock::time_point at_ms(int ms) {
  return t0 + milliseconds(ms);
}

HostPacer::Sample clean(double connect_s = 0.0005, double first_byte_s = 0.002) {
  return {true, connect_s, first_byte_s};
}

// One completed attempt that started at `start_ms` and finished at `end_ms`.
void complete(HostPacer& p, int start_ms, int end_ms, bool demand = true, HostPacer::Sample s = clean()) {
  p.started();
  p.on_complete(s, at_ms(start_ms), at_ms(end_ms), demand);
  p.finished();
}

TEST(HostPacer, SlowStartReachesTheCeilingOnlyWithDemand) {
  HostPacer p({.start = 4, .ceiling = 32});
  EXPECT_EQ(p.limit(), 4);
  for (int i = 0; i < 10; ++i) complete(p, i, i + 1, /*demand=*/false);
  EXPECT_EQ(p.limit(), 4) << "no more work than slots: nothing to learn, no growth";
  for (int i = 0; i < 27; ++i) complete(p, 20 + i, 21 + i);
  EXPECT_EQ(p.limit(), 31) << "one more per clean completion";
  for (int i = 0; i < 10; ++i) complete(p, 50 + i, 51 + i);
  EXPECT_EQ(p.limit(), 32) << "never above the ceiling";
  EXPECT_EQ(p.stats().decreases, 0);

  HostPacer small({.start = 10, .ceiling = 3});
  EXPECT_EQ(small.limit(), 3) << "start is clamped to the ceiling";
}

TEST(HostPacer, SlotsAndPauses) {
  HostPacer p({.start = 2, .ceiling = 8, .max_pause_s = 5});
  EXPECT_TRUE(p.can_start(at_ms(0)));
  p.started();
  p.started();
  EXPECT_FALSE(p.can_start(at_ms(0))) << "both slots taken";
  EXPECT_EQ(p.stats().peak_active, 2);
  p.finished();
  EXPECT_TRUE(p.can_start(at_ms(0)));
  p.pause(60, at_ms(0));  // Retry-After: 60, capped at 5 s
  EXPECT_FALSE(p.can_start(at_ms(4999)));
  EXPECT_TRUE(p.can_start(at_ms(5001)));
}

TEST(HostPacer, OneDecreasePerEpisode) {
  HostPacer p({.start = 16, .ceiling = 32});
  complete(p, 0, 1);  // a connect baseline exists
  ASSERT_EQ(p.limit(), 17);
  // Three attempts that started before the first decrease stall: one episode.
  p.on_congestion(Congestion::kSlowConnect, at_ms(2), at_ms(300));
  EXPECT_EQ(p.limit(), 8);
  p.on_congestion(Congestion::kSlowConnect, at_ms(3), at_ms(301));
  p.on_congestion(Congestion::kSlowFirstByte, at_ms(250), at_ms(1400));
  EXPECT_EQ(p.limit(), 8);
  // One started after it: a new episode.
  p.on_congestion(Congestion::kConnectFailed, at_ms(310), at_ms(400));
  EXPECT_EQ(p.limit(), 4);
  p.on_congestion(Congestion::kBusy, at_ms(410), at_ms(420));
  EXPECT_EQ(p.limit(), 2);
  p.on_congestion(Congestion::kBusy, at_ms(430), at_ms(440));
  p.on_congestion(Congestion::kBusy, at_ms(450), at_ms(460));
  EXPECT_EQ(p.limit(), 1) << "never below one";
  const auto& s = p.stats();
  EXPECT_EQ(s.decreases, 5);
  EXPECT_EQ(s.signals[int(Congestion::kSlowConnect)], 2);
  EXPECT_EQ(s.signals[int(Congestion::kSlowFirstByte)], 1);
  EXPECT_EQ(s.signals[int(Congestion::kConnectFailed)], 1);
  EXPECT_EQ(s.signals[int(Congestion::kBusy)], 3);
}

TEST(HostPacer, StalledConnectsDropTheLimitToWhatWasAccepted) {
  HostPacer p({.start = 32, .ceiling = 32});
  complete(p, 0, 1);
  // 32 in flight, 29 of them stuck in connect: the server's queue took 3.
  p.on_congestion(Congestion::kSlowConnect, at_ms(5), at_ms(260), /*accepted=*/3);
  EXPECT_EQ(p.limit(), 3);
  // Accepted above half the limit: halving still applies.
  HostPacer q({.start = 20, .ceiling = 32});
  complete(q, 0, 1);
  q.on_congestion(Congestion::kSlowConnect, at_ms(5), at_ms(260), /*accepted=*/19);
  EXPECT_EQ(q.limit(), 10);
}

TEST(HostPacer, ProbesSlowlyAfterCongestionAndSlowerAtTheSameWall) {
  HostPacer p({.start = 8, .ceiling = 32, .probe_interval_s = 0.5, .max_probe_interval_s = 2});
  complete(p, 0, 1);  // 9
  p.on_congestion(Congestion::kSlowConnect, at_ms(2), at_ms(1000));
  ASSERT_EQ(p.limit(), 4);
  for (int ms = 1001; ms < 1499; ms += 10) complete(p, ms, ms + 1);
  EXPECT_EQ(p.limit(), 4) << "no growth before the probe interval passed";
  complete(p, 1500, 1501);
  EXPECT_EQ(p.limit(), 5);
  complete(p, 1502, 1503);
  EXPECT_EQ(p.limit(), 5) << "one step per interval";
  complete(p, 2001, 2002);
  EXPECT_EQ(p.limit(), 6);
  // Back near the old wall (9 -> 6 differs by 3 > 9/4): a new level, same interval.
  p.on_congestion(Congestion::kSlowConnect, at_ms(2100), at_ms(2400));
  EXPECT_EQ(p.limit(), 3);
  complete(p, 2401, 2899);
  EXPECT_EQ(p.limit(), 3);
  complete(p, 2902, 2903);
  EXPECT_EQ(p.limit(), 4);
  complete(p, 3403, 3404);
  complete(p, 3905, 3906);
  EXPECT_EQ(p.limit(), 6);
  // Congested again at 6, the level of the last decrease: probe half as often (1 s).
  p.on_congestion(Congestion::kSlowConnect, at_ms(3950), at_ms(4000));
  EXPECT_EQ(p.limit(), 3);
  complete(p, 4001, 4990);
  EXPECT_EQ(p.limit(), 3);
  complete(p, 4991, 5001);
  EXPECT_EQ(p.limit(), 4);
}

TEST(HostPacer, StallThresholdsFollowTheHostsOwnTimes) {
  HostPacer p({.start = 4, .ceiling = 8});
  EXPECT_DOUBLE_EQ(p.connect_stall_s(), 1.0) << "unknown host: TCP's first SYN retry time";
  EXPECT_TRUE(std::isinf(p.first_byte_stall_s())) << "no judgement before 8 samples";
  for (int i = 0; i < 8; ++i) complete(p, i, i + 1, false, clean(0.0002, 0.001));
  EXPECT_DOUBLE_EQ(p.connect_stall_s(), 0.25) << "a local host: the floor";
  EXPECT_DOUBLE_EQ(p.first_byte_stall_s(), 1.0);

  HostPacer far({.start = 4, .ceiling = 8});
  for (int i = 0; i < 8; ++i) complete(far, i, i + 1, false, clean(0.150, 0.200));
  EXPECT_NEAR(far.connect_stall_s(), 8 * 0.150, 1e-9) << "a distant host: 8x its usual connect";
  EXPECT_NEAR(far.first_byte_stall_s(), 16 * 0.200, 1e-9);
  EXPECT_NEAR(far.stats().connect_baseline_s, 0.150, 1e-9);

  // A completed connect that took a SYN retry (1 s) is a congestion signal, and does not move
  // the baseline; a reused connection's zero connect time does not either.
  complete(p, 100, 1100, true, clean(1.02, 0.001));
  EXPECT_EQ(p.stats().decreases, 1);
  EXPECT_EQ(p.limit(), 2);
  EXPECT_NEAR(p.stats().connect_baseline_s, 0.0002, 1e-9);
  EXPECT_NEAR(p.stats().max_connect_s, 1.02, 1e-9);
  complete(p, 1200, 1201, true, {false, 0, 0.001});
  EXPECT_NEAR(p.stats().connect_baseline_s, 0.0002, 1e-9);
  // A response whose first byte came 3 s late is one too.
  complete(p, 1300, 4300, true, clean(0.0002, 3.0));
  EXPECT_EQ(p.stats().decreases, 2);
  EXPECT_EQ(p.limit(), 1);
}

TEST(HostPacer, SlowConnectWithoutABaselineChangesNothing) {
  HostPacer p({.start = 4, .ceiling = 8});
  p.on_congestion(Congestion::kSlowConnect, at_ms(0), at_ms(1000));
  EXPECT_EQ(p.limit(), 4) << "nothing to compare with yet (a distant host, not a stalled one)";
  EXPECT_EQ(p.stats().signals[int(Congestion::kSlowConnect)], 1);
  p.on_congestion(Congestion::kBusy, at_ms(0), at_ms(1000));
  EXPECT_EQ(p.limit(), 2) << "a 503 needs no baseline";
}

TEST(HostPacer, ContinuedKeepsWhatWasLearned) {
  HostPacer crawl({.start = 4, .ceiling = 32});
  for (int i = 0; i < 10; ++i) complete(crawl, i, i + 1, true, clean(0.001, 0.004));
  crawl.on_congestion(Congestion::kSlowConnect, at_ms(20), at_ms(300));  // 14 -> 7
  crawl.started();
  crawl.pause(10, at_ms(300));
  const HostPacer downloads = crawl.continued(32);
  EXPECT_EQ(downloads.limit(), 7);
  EXPECT_EQ(downloads.active(), 0);
  EXPECT_TRUE(downloads.can_start(at_ms(301))) << "the crawl's pause and slots stay behind";
  EXPECT_EQ(downloads.stats().decreases, 0) << "counters start over";
  EXPECT_NEAR(downloads.stats().connect_baseline_s, 0.001, 1e-9);
  EXPECT_DOUBLE_EQ(downloads.connect_stall_s(), crawl.connect_stall_s());
  EXPECT_EQ(crawl.continued(5).limit(), 5) << "a lower ceiling clamps";
}

}  // namespace
}  // namespace incept::data

// The host-side pieces of data-parallel training that need no GPU: the gradient buckets of
// DIGITS' GoogLeNet (contiguous, last layers first, each complete after the backward of the
// layer it names) and ReplicaSync (sums over replica threads; an abort wakes every waiter).
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "engine/check.h"
#include "engine/grad_buckets.h"
#include "engine/net_plan.h"
#include "engine/replica_sync.h"
#include "models/models.h"

namespace incept {
namespace {

NetPlan googlenet_plan() {
  PlanOptions po;
  po.batch = 2;
  po.num_classes = 1000;
  return plan_net(models::googlenet(), po);
}

TEST(GradBuckets, GoogLeNetBucketsCoverTheArenaLastLayersFirst) {
  const NetPlan plan = googlenet_plan();
  for (std::size_t elem : {std::size_t(4), std::size_t(2)}) {
    const auto buckets = plan_grad_buckets(plan, elem);
    // 53.5 MB of fp32 gradients (26.8 MB in bf16): a first bucket of the last classifier, then
    // 25 MB ones.
    ASSERT_EQ(buckets.size(), elem == 4 ? 3u : 2u);
    // Contiguous, from the end of the arena down to 0.
    EXPECT_EQ(buckets.front().hi, plan.param_elems);
    EXPECT_EQ(buckets.back().lo, 0);
    for (std::size_t b = 1; b < buckets.size(); ++b) EXPECT_EQ(buckets[b].hi, buckets[b - 1].lo);
    // The first bucket is small (it starts early), the others about 25 MB (all but the last).
    EXPECT_LT(double(buckets[0].elems()) * double(elem), 8.0 * (1 << 20));
    for (std::size_t b = 1; b + 1 < buckets.size(); ++b)
      EXPECT_GE(double(buckets[b].elems()) * double(elem), 25.0 * (1 << 20));
    // ready_after: the earliest layer with a parameter in the bucket, and no parameter of an
    // earlier layer inside it; buckets complete in backward order.
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      int earliest = 1 << 30;
      for (const ParamPlan& p : plan.params) {
        const bool inside = p.offset >= buckets[b].lo && p.offset + p.count <= buckets[b].hi;
        const bool overlaps = p.offset < buckets[b].hi && p.offset + p.count > buckets[b].lo;
        EXPECT_EQ(inside, overlaps) << "a parameter blob split between buckets: " << p.layer;
        if (inside) earliest = std::min(earliest, plan.find_layer(p.layer));
      }
      EXPECT_EQ(buckets[b].ready_after, earliest);
      if (b > 0) {
        EXPECT_LT(buckets[b].ready_after, buckets[b - 1].ready_after);
      }
    }
  }
}

TEST(GradBuckets, OneBucketWhenTheNetIsSmall) {
  const NetPlan plan = plan_net(models::lenet(), [] {
    PlanOptions po;
    po.batch = 2;
    po.num_classes = 10;
    po.channels = 1;
    po.height = po.width = 28;
    return po;
  }());
  const auto buckets = plan_grad_buckets(plan, 4, std::size_t(64) << 20, std::size_t(64) << 20);
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_EQ(buckets[0].lo, 0);
  EXPECT_EQ(buckets[0].hi, plan.param_elems);
  EXPECT_EQ(buckets[0].ready_after, plan.find_layer(plan.params.front().layer));
}

TEST(ReplicaSync, ThreadsGetTheSameSumsRoundAfterRound) {
  constexpr int kThreads = 4, kRounds = 200;
  ReplicaSync sync(kThreads, nullptr);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const auto s = sync.sum(t, {double(t + 1), double(r)});
        if (s[0] != 10.0 || s[1] != 4.0 * r) ++bad;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(ReplicaSync, AbortWakesTheWaitingReplicas) {
  ReplicaSync sync(3, nullptr);
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)  // the third replica never arrives (it failed)
    ts.emplace_back([&, t] {
      try {
        sync.sum(t, {1.0});
      } catch (const Error& e) {
        if (std::string(e.what()).find("replica 2 failed") != std::string::npos) ++errors;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  sync.abort("replica 2 failed: out of memory");
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 2);
  EXPECT_THROW(sync.sum(0, {1.0}), Error);
}

}  // namespace
}  // namespace incept

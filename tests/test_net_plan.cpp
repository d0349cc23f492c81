// The net plan and the CPU net as a whole: arena placement never overlaps live buffers, a
// small inception-shaped net (concat slices, fan-out into branches and an auxiliary head,
// in-place ReLU and Dropout, LRN, CEIL pooling, two weighted losses) passes a whole-net
// finite-difference check in double, forward-only plans carry no gradients, and spec
// mistakes are reported with the layer's name.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/check.h"
#include "engine/cpu_net.h"
#include "engine/memory_plan.h"
#include "models/spec_builder.h"
#include "testing/test_util.h"

namespace incept {
namespace {

TEST(MemoryPlan, LiveBuffersNeverOverlap) {
  std::mt19937 rng(5);
  MemoryPlan mem(4);
  struct B {
    std::int64_t n;
    int a, b;
  };
  std::vector<B> bs;
  for (int i = 0; i < 200; ++i) {
    const int a = int(rng() % 50), len = int(rng() % 10);
    bs.push_back({1 + std::int64_t(rng() % 100), a, a + len});
    mem.add(bs.back().n, bs.back().a, bs.back().b);
  }
  mem.place();
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(mem.offset(i) % 4, 0);
    EXPECT_LE(mem.offset(i) + bs[i].n, mem.arena_elems());
    for (int j = 0; j < i; ++j) {
      const bool live = bs[i].a <= bs[j].b && bs[j].a <= bs[i].b;
      const bool overlap = mem.offset(i) < mem.offset(j) + bs[j].n && mem.offset(j) < mem.offset(i) + bs[i].n;
      EXPECT_FALSE(live && overlap) << i << " " << j;
    }
  }
  EXPECT_LT(mem.arena_elems(), mem.total_elems());
}

NetSpec mini_inception() {
  using namespace models;
  NetSpec net;
  net.name = "mini";
  add_conv(net, "c1", "data", 4, 3, 1, 1, xavier(), 0.2f, "r1");
  add_lrn(net, "n1", "c1");
  LayerSpec& lrn = net.layers.back();
  std::get<LrnParams>(lrn.params).geom.alpha = 0.5f;  // make the LRN term visible
  add_conv(net, "m/1x1", "n1", 3, 1, 1, 0, xavier(), 0.2f, "m/relu_1x1");
  add_conv(net, "m/3x3_reduce", "n1", 2, 1, 1, 0, xavier(), 0.2f, "m/relu_3x3_reduce");
  add_conv(net, "m/3x3", "m/3x3_reduce", 3, 3, 1, 1, xavier(), 0.2f, "m/relu_3x3");
  add_pool(net, "m/pool", "n1", PoolMethod::kMax, 3, 1, 1);
  add_conv(net, "m/pool_proj", "m/pool", 2, 1, 1, 0, xavier(), 0.2f, "m/relu_pool_proj");
  LayerSpec concat;
  concat.name = "m/output";
  concat.params = ConcatParams{};
  concat.bottoms = {"m/1x1", "m/3x3", "m/pool_proj"};
  concat.tops = {"m/output"};
  net.layers.push_back(concat);
  add_pool(net, "a/ave_pool", "m/output", PoolMethod::kAve, 3, 2);
  add_fc(net, "a/fc", "a/ave_pool", 5, xavier(), 0.2f);
  add_relu(net, "a/relu_fc", "a/fc");
  add_dropout(net, "a/drop_fc", "a/fc", 0.5f);
  add_fc(net, "a/classifier", "a/fc", 0, xavier(), 0.f);
  add_loss(net, "a/loss", "a/classifier", "a/loss", 0.3f);
  add_pool(net, "pool", "m/output", PoolMethod::kMax, 3, 2);
  add_conv(net, "proj", "pool", 2, 1, 1, 0, xavier(), 0.2f, "relu_proj");
  add_dropout(net, "drop", "proj", 0.4f);
  add_fc(net, "classifier", "proj", 0, xavier(), 0.f);
  add_loss(net, "loss", "classifier", "loss", 1.f);
  add_accuracy(net, "top-1", "classifier", "accuracy", 1);
  return net;
}

PlanOptions mini_options(Stage stage = Stage::kTrain) {
  PlanOptions o;
  o.stage = stage;
  o.batch = 2;
  o.height = o.width = 7;
  o.num_classes = 3;
  return o;
}

TEST(NetPlan, MiniInceptionPlan) {
  const NetPlan p = plan_net(mini_inception(), mini_options());
  const BlobPlan& out = p.blobs[p.blob("m/output")];
  EXPECT_EQ(out.shape, (Nchw{2, 8, 7, 7}));
  EXPECT_EQ(p.blobs[p.blob("m/3x3")].offset, out.offset + 3 * 49);
  EXPECT_EQ(p.blobs[p.blob("m/3x3")].shape.nstride(), 8 * 49);
  // n1 feeds three branches: the first to run backward (pool) overwrites, the others add.
  const LayerPlan& b1 = p.layers[p.find_layer("m/1x1")];
  const LayerPlan& b2 = p.layers[p.find_layer("m/3x3_reduce")];
  const LayerPlan& b3 = p.layers[p.find_layer("m/pool")];
  EXPECT_EQ(b3.accumulate[0], 0);
  EXPECT_EQ(b2.accumulate[0], 1);
  EXPECT_EQ(b1.accumulate[0], 1);
  // m/output feeds the main pool (runs backward first) and the aux head (adds).
  EXPECT_EQ(p.layers[p.find_layer("pool")].accumulate[0], 0);
  EXPECT_EQ(p.layers[p.find_layer("a/ave_pool")].accumulate[0], 1);
  EXPECT_EQ(p.blobs[p.data_blob].diff_offset, -1);
}

TEST(NetPlan, WholeNetGradientMatchesFiniteDifferences) {
  CpuNet<double> net(plan_net(mini_inception(), mini_options()));
  net.init_params(11);
  net.set_dropout_seed(5);
  const auto x = testing::random_doubles(2 * 3 * 7 * 7, 3, -2, 2);
  std::copy(x.begin(), x.end(), net.data());
  net.labels()[0] = 2;
  net.labels()[1] = 0;
  const std::uint64_t step = 17;
  net.zero_grads();
  const double j0 = net.forward(step);
  EXPECT_NEAR(j0, net.output("loss") + double(0.3f) * net.output("a/loss"), 1e-12);
  net.backward();
  const std::vector<double> analytic(net.grads().begin(), net.grads().end());
  const double eps = 1e-6;
  int checked = 0;
  for (const ParamPlan& pp : net.plan().params) {
    for (std::int64_t i = 0; i < pp.count; ++i) {
      double& w = net.params()[pp.offset + i];
      const double keep = w;
      w = keep + eps;
      const double jp = net.forward(step);
      w = keep - eps;
      const double jm = net.forward(step);
      w = keep;
      const double numeric = (jp - jm) / (2 * eps);
      const double a = analytic[pp.offset + i];
      EXPECT_NEAR(a, numeric, 1e-6 + 1e-4 * std::abs(numeric))
          << pp.layer << "[" << pp.index << "][" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, net.plan().param_count());
  // A second backward without zeroing doubles the parameter gradients (they accumulate).
  net.forward(step);
  net.backward();
  for (std::size_t i = 0; i < analytic.size(); ++i) ASSERT_NEAR(net.grads()[i], 2 * analytic[i], 1e-12);
}

TEST(NetPlan, ForwardOnlyPlansHaveNoGradientsAndReuseMore) {
  const NetPlan train = plan_net(mini_inception(), mini_options());
  const NetPlan val = plan_net(mini_inception(), mini_options(Stage::kVal));
  EXPECT_FALSE(val.options.training);
  for (const BlobPlan& b : val.blobs) EXPECT_EQ(b.diff_offset, -1) << b.name;
  EXPECT_LT(val.activation_elems, train.activation_elems);
  CpuNet<float> net(val);
  net.init_params(1);
  std::fill_n(net.data(), 2 * 3 * 49, 0.5f);
  net.labels()[0] = net.labels()[1] = 1;
  net.forward();
  EXPECT_GE(net.output("accuracy"), 0.f);
  EXPECT_LE(net.output("accuracy"), 1.f);
  EXPECT_THROW(net.backward(), Error);
}

TEST(NetPlan, SpecMistakesNameTheLayer) {
  NetSpec bad = mini_inception();
  bad.layers[3].bottoms = {"nope"};
  try {
    plan_net(bad, mini_options());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m/1x1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
  }
  NetSpec in_place_conv = mini_inception();
  in_place_conv.layers[0].tops = {"data"};
  EXPECT_THROW(plan_net(in_place_conv, mini_options()), Error);
  PlanOptions no_classes = mini_options();
  no_classes.num_classes = 0;
  EXPECT_THROW(plan_net(mini_inception(), no_classes), Error);
}

}  // namespace
}  // namespace incept

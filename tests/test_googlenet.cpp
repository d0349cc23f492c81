// DIGITS' GoogLeNet as planned by the engine: layer/conv counts, Caffe's spatial sizes, the
// parameter counts with and without the auxiliary heads, fillers, stages, the concat slices,
// and one forward+backward at 224x224 batch 2 on the CPU reference (seconds, not minutes); the
// reference split over threads by images (testing/sharded_cpu_net.h) is the one-net reference.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "engine/cpu_net.h"
#include "engine/fillers.h"
#include "engine/solver.h"
#include "kernels/dtype_gpu.h"
#include "models/models.h"
#include "testing/sharded_cpu_net.h"
#include "testing/test_util.h"

namespace incept {
namespace {

// Without side heads (the auxiliary heads before their module, as Caffe orders them); the tests
// of PlanOptions::side_heads (on by default) set it themselves.
NetPlan plan(Stage stage, int classes, int batch = 2) {
  PlanOptions o;
  o.stage = stage;
  o.batch = batch;
  o.num_classes = classes;
  o.side_heads = false;
  return plan_net(models::googlenet(), o);
}

// Every arena range touched in region r (values and gradients of the roots of every blob its
// layers read or write, their saved state) is disjoint from every other one.
void expect_disjoint_memory(const NetPlan& p, const BranchRegion& r, const std::string& what) {
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  std::set<int> roots;
  for (int l = r.first; l <= r.last; ++l) {
    const LayerPlan& lp = p.layers[l];
    for (const auto* v : {&lp.bottoms, &lp.tops})
      for (int b : *v) roots.insert(p.blobs[b].root);
    if (lp.saved_elems > 0) ranges.emplace_back(lp.saved_offset, lp.saved_offset + lp.saved_elems);
  }
  for (int root : roots) {
    const BlobPlan& b = p.blobs[root];
    if (b.is_label) continue;
    ranges.emplace_back(b.offset, b.offset + b.shape.count());
    if (b.diff_offset >= 0) ranges.emplace_back(b.diff_offset, b.diff_offset + b.shape.count());
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    EXPECT_LE(ranges[i - 1].second, ranges[i].first) << what << ": two buffers of the region share memory";
}

// The branch an inception layer belongs to, from its name (1x1, 3x3 chain, 5x5 chain, pool chain).
int inception_branch(const std::string& name) {
  return name.find("/1x1") != std::string::npos || name.find("relu_1x1") != std::string::npos ? 0
         : name.find("3x3") != std::string::npos                                              ? 1
         : name.find("5x5") != std::string::npos                                              ? 2
                                                                                              : 3;
}

// The inception modules are found as regions whose branches may run concurrently, and the memory
// plan never lets two buffers touched inside one region share arena memory (a GPU running the
// branches on several streams would race on it otherwise).
TEST(GoogLeNetPlan, InceptionModulesAreBranchRegionsWithDisjointMemory) {
  for (const Stage stage : {Stage::kTrain, Stage::kVal}) {
    const NetPlan p = plan(stage, 1000, 4);
    ASSERT_EQ(p.regions.size(), 9u) << (stage == Stage::kTrain ? "train" : "val");
    for (const BranchRegion& r : p.regions) {
      const LayerPlan& cat = p.layers[r.last];
      ASSERT_EQ(cat.kind(), LayerKind::kConcat);
      const std::string module = cat.name.substr(0, cat.name.find('/'));
      EXPECT_EQ(p.layers[r.first].name, module + "/1x1");
      EXPECT_EQ(r.branches(), 4) << module;
      EXPECT_EQ(p.layers[r.first].bottoms[0], r.fork) << module;  // the module's input
      EXPECT_LT(p.blobs[r.fork].producer, r.first) << module;
      ASSERT_EQ(int(r.branch.size()), r.last - r.first + 1);
      for (int l = r.first; l < r.last; ++l)
        EXPECT_EQ(r.branch[l - r.first], inception_branch(p.layers[l].name)) << p.layers[l].name;
      expect_disjoint_memory(p, r, module);
    }
  }
  PlanOptions o;
  o.batch = 2;
  o.num_classes = 10;
  o.branch_regions = false;
  EXPECT_TRUE(plan_net(models::googlenet(), o).regions.empty());
}

// PlanOptions::side_heads: loss1's head joins inception_4b's region and loss2's joins 4e's, as a
// fifth branch (in the val net too, with its accuracy layers); the other modules are unchanged,
// and every region's buffers stay disjoint.
TEST(GoogLeNetPlan, AuxiliaryHeadsJoinTheNextModuleAsABranch) {
  for (const Stage stage : {Stage::kTrain, Stage::kVal}) {
    PlanOptions o;
    o.stage = stage;
    o.batch = 4;
    o.num_classes = 1000;
    o.side_heads = true;
    const NetPlan p = plan_net(models::googlenet(), o);
    const char* what = stage == Stage::kTrain ? "train" : "val";
    ASSERT_EQ(p.regions.size(), 9u) << what;
    int heads = 0;
    for (const BranchRegion& r : p.regions) {
      const std::string module = p.layers[r.last].name.substr(0, p.layers[r.last].name.find('/'));
      const std::string head = module == "inception_4b" ? "loss1/" : module == "inception_4e" ? "loss2/" : "";
      ASSERT_EQ(int(r.branch.size()), r.last - r.first + 1) << what;
      if (head.empty()) {
        EXPECT_EQ(p.layers[r.first].name, module + "/1x1") << what;
        EXPECT_EQ(r.branches(), 4) << module;
      } else {
        ++heads;
        EXPECT_EQ(p.layers[r.first].name, head + "ave_pool") << what;
        EXPECT_EQ(r.branches(), 5) << module;
        EXPECT_EQ(p.layers[r.first].bottoms[0], r.fork) << module;
      }
      for (int l = r.first; l < r.last; ++l) {
        const std::string& name = p.layers[l].name;
        EXPECT_EQ(r.branch[l - r.first],
                  name.rfind(head.empty() ? "-" : head, 0) == 0 ? 4 : inception_branch(name))
            << what << " " << name;
      }
      expect_disjoint_memory(p, r, module);
    }
    EXPECT_EQ(heads, 2) << what;
  }
}

Nchw shape_of(const NetPlan& p, const std::string& blob) {
  Nchw s = p.blobs[p.blob(blob)].shape;
  s.n_stride = 0;
  return s;
}

TEST(GoogLeNet, SpatialSizesAndChannels) {
  const NetPlan p = plan(Stage::kTrain, 1000);
  EXPECT_EQ(shape_of(p, "data"), (Nchw{2, 3, 224, 224}));
  EXPECT_EQ(shape_of(p, "conv1/7x7_s2"), (Nchw{2, 64, 112, 112}));
  EXPECT_EQ(shape_of(p, "pool1/3x3_s2"), (Nchw{2, 64, 56, 56}));
  EXPECT_EQ(shape_of(p, "conv2/3x3"), (Nchw{2, 192, 56, 56}));
  EXPECT_EQ(shape_of(p, "pool2/3x3_s2"), (Nchw{2, 192, 28, 28}));
  EXPECT_EQ(shape_of(p, "inception_3a/output"), (Nchw{2, 256, 28, 28}));
  EXPECT_EQ(shape_of(p, "inception_3b/output"), (Nchw{2, 480, 28, 28}));
  EXPECT_EQ(shape_of(p, "pool3/3x3_s2"), (Nchw{2, 480, 14, 14}));
  EXPECT_EQ(shape_of(p, "inception_4a/output"), (Nchw{2, 512, 14, 14}));
  EXPECT_EQ(shape_of(p, "inception_4d/output"), (Nchw{2, 528, 14, 14}));
  EXPECT_EQ(shape_of(p, "inception_4e/output"), (Nchw{2, 832, 14, 14}));
  EXPECT_EQ(shape_of(p, "pool4/3x3_s2"), (Nchw{2, 832, 7, 7}));
  EXPECT_EQ(shape_of(p, "inception_5b/output"), (Nchw{2, 1024, 7, 7}));
  EXPECT_EQ(shape_of(p, "pool5/7x7_s1"), (Nchw{2, 1024, 1, 1}));
  EXPECT_EQ(shape_of(p, "loss1/ave_pool"), (Nchw{2, 512, 4, 4}));
  EXPECT_EQ(shape_of(p, "loss2/ave_pool"), (Nchw{2, 528, 4, 4}));
  EXPECT_EQ(shape_of(p, "loss3/classifier"), (Nchw{2, 1000, 1, 1}));
}

TEST(GoogLeNet, ConvolutionAndParameterCounts) {
  const NetPlan train = plan(Stage::kTrain, 1000);
  const NetPlan deploy = plan(Stage::kDeploy, 1000, 1);
  EXPECT_EQ(deploy.conv_count(), 57);
  EXPECT_EQ(train.conv_count(), 59);  // + loss1/conv, loss2/conv
  EXPECT_EQ(train.param_count(), 13378280);
  EXPECT_EQ(deploy.param_count(), 6998552);
  // The heads alone: conv 128 + fc 1024 + classifier, on 512 and 528 channels.
  const std::int64_t head1 = 128 * 512 + 128 + 2048 * 1024 + 1024 + 1000 * 1024 + 1000;
  const std::int64_t head2 = head1 + 128 * 16;
  EXPECT_EQ(train.param_count() - deploy.param_count(), head1 + head2);
  // Classifier size follows the dataset.
  EXPECT_EQ(plan(Stage::kDeploy, 10, 1).param_count(), 6998552 - 990 * 1025);
}

TEST(GoogLeNet, StagesNamesAndFillers) {
  const NetSpec spec = models::googlenet();
  const NetPlan train = plan(Stage::kTrain, 5), val = plan(Stage::kVal, 5),
                deploy = plan(Stage::kDeploy, 5, 1);
  auto outputs = [](const NetPlan& p) {
    std::set<std::string> s;
    for (const BlobPlan& b : p.blobs)
      if (b.is_output) s.insert(b.name);
    return s;
  };
  EXPECT_EQ(outputs(train), (std::set<std::string>{"loss1/loss", "loss2/loss", "loss"}));
  EXPECT_EQ(outputs(val), (std::set<std::string>{"loss1/loss", "loss1/accuracy", "loss1/accuracy-top5",
                                                 "loss2/loss", "loss2/accuracy", "loss2/accuracy-top5",
                                                 "loss", "accuracy", "accuracy-top5"}));
  EXPECT_EQ(outputs(deploy), (std::set<std::string>{"softmax"}));
  EXPECT_EQ(train.layers[train.find_layer("loss1/loss")].loss_weight, 0.3f);
  EXPECT_EQ(train.layers[train.find_layer("loss3/loss")].loss_weight, 1.0f);
  EXPECT_EQ(std::get<DropoutParams>(spec.find("loss1/drop_fc")->params).ratio, 0.7f);
  EXPECT_EQ(std::get<DropoutParams>(spec.find("pool5/drop_7x7_s1")->params).ratio, 0.4f);
  EXPECT_TRUE(spec.find("pool5/drop_7x7_s1")->in_stage(Stage::kDeploy));
  EXPECT_FALSE(spec.find("loss1/fc")->in_stage(Stage::kDeploy));
  for (const ParamPlan& p : train.params) {
    const bool bias = p.index == 1;
    EXPECT_EQ(p.lr_mult, bias ? 2.f : 1.f) << p.layer;
    EXPECT_EQ(p.decay_mult, bias ? 0.f : 1.f) << p.layer;
    const bool classifier = p.layer.find("classifier") != std::string::npos;
    if (bias)
      EXPECT_EQ(p.filler.value, classifier ? 0.f : 0.2f) << p.layer;
    else
      EXPECT_EQ(p.filler.kind, FillerKind::kXavier) << p.layer;
  }
  // xavier: uniform in +-sqrt(3 / fan_in), std ignored.
  std::vector<float> w(train.param_elems);
  fill_params(train, 5, w.data());
  const ParamPlan& c1 = train.params[0];
  ASSERT_EQ(c1.layer, "conv1/7x7_s2");
  const double bound = std::sqrt(3.0 / (3 * 7 * 7));
  float mx = 0;
  for (std::int64_t i = 0; i < c1.count; ++i) mx = std::max(mx, std::abs(w[c1.offset + i]));
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.95 * bound);
  EXPECT_EQ(w[train.params[1].offset], 0.2f);
}

TEST(GoogLeNet, BranchesAreSlicesOfTheConcat) {
  const NetPlan p = plan(Stage::kTrain, 10);
  const BlobPlan& out = p.blobs[p.blob("inception_4a/output")];
  const std::int64_t hw = 14 * 14;
  const char* branches[] = {"inception_4a/1x1", "inception_4a/3x3", "inception_4a/5x5",
                            "inception_4a/pool_proj"};
  const int c0[] = {0, 192, 192 + 208, 192 + 208 + 48};
  for (int i = 0; i < 4; ++i) {
    const BlobPlan& b = p.blobs[p.blob(branches[i])];
    EXPECT_EQ(b.offset, out.offset + c0[i] * hw) << branches[i];
    EXPECT_EQ(b.diff_offset, out.diff_offset + c0[i] * hw) << branches[i];
    EXPECT_EQ(b.shape.nstride(), 512 * hw) << branches[i];
  }
  // Lifetime reuse saves a good part of the arena.
  EXPECT_LT(p.activation_elems, p.unshared_elems * 9 / 10) << p.memory_summary();
  std::printf("GoogLeNet train batch 2: %s\n", p.memory_summary().c_str());
}

TEST(GoogLeNet, CpuForwardBackwardAtBatch2) {
  const int classes = 1000;
  CpuNet<float> net(plan(Stage::kTrain, classes));
  net.init_params(1);
  net.set_dropout_seed(3);
  const auto x = testing::random_floats(net.plan().blobs[net.plan().data_blob].shape.count(), 9, -50, 50);
  std::copy(x.begin(), x.end(), net.data());
  net.labels()[0] = 3;
  net.labels()[1] = 999;
  const auto t0 = std::chrono::steady_clock::now();
  const float objective = net.forward(0);
  const auto t1 = std::chrono::steady_clock::now();
  net.zero_grads();
  net.backward();
  const auto t2 = std::chrono::steady_clock::now();
  const double f = std::chrono::duration<double>(t1 - t0).count(),
               b = std::chrono::duration<double>(t2 - t1).count();
  std::printf("GoogLeNet CPU batch 2: forward %.2f s, backward %.2f s\n", f, b);
  EXPECT_LT(f + b, 60.0);
  // Near-uniform predictions of the main classifier at initialisation (the auxiliary heads
  // see dropout 0.7, scaled by 1/0.3, so their logits are larger).
  EXPECT_NEAR(net.output("loss"), std::log(double(classes)), 1.0);
  for (const char* name : {"loss1/loss", "loss2/loss"}) {
    EXPECT_TRUE(std::isfinite(net.output(name))) << name;
    EXPECT_GT(net.output(name), 0.f) << name;
  }
  EXPECT_NEAR(objective, net.output("loss") + 0.3f * (net.output("loss1/loss") + net.output("loss2/loss")),
              1e-3);
  // Every parameter blob got a gradient, all finite.
  for (std::size_t p = 0; p < net.plan().params.size(); ++p) {
    const ParamPlan& pp = net.plan().params[p];
    double sum = 0;
    bool finite = true;
    for (std::int64_t i = 0; i < pp.count; ++i) {
      finite = finite && std::isfinite(net.grad(int(p))[i]);
      sum += std::abs(net.grad(int(p))[i]);
    }
    EXPECT_TRUE(finite) << pp.layer;
    EXPECT_GT(sum, 0.0) << pp.layer << " " << pp.index;
  }
}

// The forward-only (val) plan reuses memory far more aggressively than the training plan;
// with dropout off both must compute the same losses from the same parameters.
TEST(GoogLeNet, ValPlanMatchesTrainPlanWithoutDropout) {
  NetSpec spec = models::googlenet();
  for (LayerSpec& l : spec.layers)
    if (auto* d = std::get_if<DropoutParams>(&l.params)) d->ratio = 0.f;
  PlanOptions o;
  o.batch = 1;
  o.num_classes = 7;
  CpuNet<float> train(plan_net(spec, o));
  o.stage = Stage::kVal;
  CpuNet<float> val(plan_net(spec, o));
  ASSERT_EQ(train.plan().param_elems, val.plan().param_elems);
  EXPECT_LT(val.plan().activation_elems, train.plan().activation_elems / 2);
  train.init_params(2);
  std::copy(train.params().begin(), train.params().end(), val.params().begin());
  const auto x = testing::random_floats(3 * 224 * 224, 4, -100, 100);
  std::copy(x.begin(), x.end(), train.data());
  std::copy(x.begin(), x.end(), val.data());
  train.labels()[0] = val.labels()[0] = 6;
  train.forward();
  val.forward();
  for (const char* name : {"loss1/loss", "loss2/loss", "loss"})
    EXPECT_NEAR(train.output(name), val.output(name), 1e-4 * std::abs(val.output(name))) << name;
  EXPECT_GE(val.output("accuracy-top5"), val.output("accuracy"));
}

// PlanOptions::side_heads changes only where the buffers live (the auxiliary heads' buffers kept
// apart from the next module's): one forward and backward gives the same bits, losses and every
// parameter gradient, as the plan without it (an aliasing mistake would change them).
TEST(GoogLeNet, SideHeadsPlanGivesTheSameBits) {
  PlanOptions o;
  o.batch = 1;
  o.num_classes = 7;
  o.side_heads = false;
  CpuNet<float> a(plan_net(models::googlenet(), o));
  o.side_heads = true;
  CpuNet<float> b(plan_net(models::googlenet(), o));
  ASSERT_NE(a.plan().regions[3].first, b.plan().regions[3].first);  // inception_4b's region grew
  a.init_params(5);
  std::copy(a.params().begin(), a.params().end(), b.params().begin());
  a.set_dropout_seed(6);
  b.set_dropout_seed(6);
  const auto x = testing::random_floats(3 * 224 * 224, 7, -60, 60);
  std::copy(x.begin(), x.end(), a.data());
  std::copy(x.begin(), x.end(), b.data());
  a.labels()[0] = b.labels()[0] = 4;
  EXPECT_EQ(a.forward(0), b.forward(0));
  a.zero_grads();
  b.zero_grads();
  a.backward();
  b.backward();
  for (const char* name : {"loss1/loss", "loss2/loss", "loss"})
    EXPECT_EQ(a.output(name), b.output(name)) << name;
  for (std::size_t p = 0; p < a.plan().params.size(); ++p)
    EXPECT_EQ(0, std::memcmp(a.grad(int(p)), b.grad(int(p)), a.plan().params[p].count * sizeof(float)))
        << a.plan().params[p].layer;
}

// A few SGD steps of the whole net (DIGITS' solver settings with base_lr 0.001: at batch 2 on
// this white-noise batch, 0.01 diverges) on one fixed batch of 2 images, 5 classes, reduce the
// objective.
TEST(GoogLeNet, SgdStepsReduceTheLossAtBatch2) {
  CpuNet<float> net(plan(Stage::kTrain, 5));
  net.init_params(21);
  net.set_dropout_seed(8);
  const auto x = testing::random_floats(2 * 3 * 224 * 224, 12, -60, 60);
  std::copy(x.begin(), x.end(), net.data());
  net.labels()[0] = 1;
  net.labels()[1] = 4;
  DigitsSolverForm form;
  form.base_lr = 0.001;
  SolverSettings s = digits_solver(form, 2 * 1000, 0, 2, 2);
  SgdSolver<float> solver(net, s);
  std::vector<float> losses;
  for (int i = 0; i < 5; ++i) losses.push_back(solver.step([](int) {}));
  std::printf("GoogLeNet SGD objective: %.3f %.3f %.3f %.3f %.3f\n", losses[0], losses[1], losses[2],
              losses[3], losses[4]);
  for (float l : losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_LT(losses.back(), 0.7f * losses.front());
}

// The reference that test_gpu_b128 runs at batch 128: 2 shards of 2 images give one net of 4's
// losses, parameter gradients (dropout on) and blob values and gradients.
TEST(GoogLeNet, ShardedReferenceIsOneNet) {
  PlanOptions o;
  o.batch = 4;
  o.num_classes = 10;
  CpuNet<double> one(plan_net(models::googlenet(), o));
  testing::ShardedCpuNet sharded(models::googlenet(), o, 2);
  ASSERT_EQ(sharded.shards(), 2);
  one.init_params(3);
  sharded.set_params(one.params());
  const auto x = testing::random_floats(std::size_t(one.plan().blobs[one.plan().data_blob].shape.count()), 5);
  std::copy(x.begin(), x.end(), one.data());
  sharded.set_input(x);
  const std::vector<std::int32_t> labels{1, 7, 3, 9};
  std::copy(labels.begin(), labels.end(), one.labels());
  sharded.set_labels(labels);
  one.set_dropout_seed(8);
  sharded.set_dropout_seed(8);
  // Blob values are compared where the forward pass leaves them: the last layer's input.
  const int pool5 = one.plan().blob("pool5/7x7_s1");
  one.zero_grads();
  one.forward(6);
  sharded.forward(6);
  const std::vector<double> pool5_values = sharded.blob_data(pool5);
  for (std::size_t i = 0; i < pool5_values.size(); ++i)
    ASSERT_NEAR(pool5_values[i], one.blob_data(pool5)[i], 1e-12 * (1 + std::abs(pool5_values[i]))) << i;
  one.backward();
  sharded.backward();
  const auto outs = sharded.scalar_outputs();
  ASSERT_EQ(outs.size(), 3u);
  for (const auto& [name, v] : outs) EXPECT_NEAR(v, one.output(name), 1e-12 * std::abs(v)) << name;
  const std::vector<double> g = sharded.grads();
  ASSERT_EQ(g.size(), one.grads().size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    num += (g[i] - one.grads()[i]) * (g[i] - one.grads()[i]);
    den += one.grads()[i] * one.grads()[i];
  }
  EXPECT_LT(std::sqrt(num / den), 1e-12);
  const int data_grad = one.plan().blob("conv1/7x7_s2");  // the last gradient backward writes
  const std::vector<double> d = sharded.blob_diff(data_grad);
  double dn = 0, dd = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    dn += (d[i] - one.blob_diff(data_grad)[i]) * (d[i] - one.blob_diff(data_grad)[i]);
    dd += d[i] * d[i];
  }
  EXPECT_GT(dd, 0.0);
  EXPECT_LT(std::sqrt(dn / dd), 1e-12);
}

// With bf16 rounding (what test_gpu_b128 compares the GPU's bf16 mode with): the shards give
// one net's results when that net rounds every layer's outputs after its forward and every
// input gradient after its backward; parameter gradients come out bf16-representable.
TEST(GoogLeNet, ShardedReferenceRoundsLikeBf16) {
  PlanOptions o;
  o.batch = 4;
  o.num_classes = 10;
  CpuNet<double> one(plan_net(models::googlenet(), o));
  testing::ShardedCpuNet sharded(models::googlenet(), o, 2);
  sharded.set_round_bf16(true);
  const NetPlan& p = one.plan();
  auto round = [](double v) {
    return double(kernels::bf16_bits_to_f32(kernels::f32_to_bf16_bits(float(v))));
  };
  auto round_view = [&](double* d, const Nchw& s) {
    for (int n = 0; d && n < s.n; ++n)
      for (std::int64_t i = 0; i < s.image(); ++i) d[n * s.nstride() + i] = round(d[n * s.nstride() + i]);
  };
  one.init_params(3);
  for (double& v : one.params()) v = round(v);
  sharded.set_params(one.params());
  auto x = testing::random_floats(std::size_t(p.blobs[p.data_blob].shape.count()), 5);
  for (float& v : x) v = float(round(v));
  std::copy(x.begin(), x.end(), one.data());
  sharded.set_input(x);
  const std::vector<std::int32_t> labels{1, 7, 3, 9};
  std::copy(labels.begin(), labels.end(), one.labels());
  sharded.set_labels(labels);
  one.zero_grads();
  for (int l = 0; l < int(p.layers.size()); ++l) {
    one.forward_layer(l, 2);
    for (int t : p.layers[l].tops)
      if (p.blobs[t].shape.count() != 1) round_view(one.blob_data(t), p.blobs[t].shape);
  }
  for (int l = int(p.layers.size()) - 1; l >= 0; --l) {
    one.backward_layer(l);
    for (std::size_t i = 0; i < p.layers[l].bottoms.size(); ++i)
      if (p.layers[l].bottom_diff[i])
        round_view(one.blob_diff(p.layers[l].bottoms[i]), p.blobs[p.layers[l].bottoms[i]].shape);
  }
  sharded.forward(2);
  sharded.backward();
  for (const auto& [name, v] : sharded.scalar_outputs())
    EXPECT_NEAR(v, one.output(name), 1e-12 * std::abs(v)) << name;
  const std::vector<double> g = sharded.grads();
  double num = 0, den = 0;
  std::size_t unrounded = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double r = round(one.grads()[i]);
    num += (g[i] - r) * (g[i] - r);
    den += r * r;
    unrounded += g[i] != round(g[i]);
  }
  EXPECT_EQ(unrounded, 0u);
  EXPECT_LT(std::sqrt(num / den), 1e-9);
}

}  // namespace
}  // namespace incept

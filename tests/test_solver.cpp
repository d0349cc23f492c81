// The solver as DIGITS configures Caffe's: the ImageNet worked example of the epoch ->
// iteration arithmetic, every LR policy at DIGITS' default percent-of-training values, the
// momentum / weight-decay / lr_mult / decay_mult update against a hand computation on a tiny
// net, and a few SGD steps of LeNet that reduce the loss on a fixed batch.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/caffe_model.h"
#include "engine/check.h"
#include "engine/solver.h"
#include "models/models.h"
#include "models/spec_builder.h"

namespace incept {
namespace {

TEST(DigitsSchedule, ImageNetWorkedExample) {
  // 1,281,167 images, 25 % per class to val: 960,875 train / 320,292 val (what the split gives
  // for ImageNet's class sizes is close to this; the formulas are what is checked).
  const std::int64_t n_train = 960875, n_val = 1281167 - 960875;
  DigitsSolverForm form;
  form.epochs = 60;
  form.batch_size = 128;
  const SolverSettings s = digits_solver(form, n_train, n_val, 32, 16);
  EXPECT_EQ(s.train_iter, 7507);  // ceil(960875 / 128)
  EXPECT_EQ(s.max_iter, 450420);
  EXPECT_EQ(s.lr.stepsize, 148639);  // ceil(33 * 450420 / 100) = ceil(148638.6)
  EXPECT_EQ(s.lr.stepsize, std::int64_t(std::ceil(33 * (450420 / 100.0))));
  EXPECT_EQ(s.lr_drops(), (std::vector<std::int64_t>{148639, 297278, 445917}));
  EXPECT_DOUBLE_EQ(s.lr.rate(0), 0.01);
  EXPECT_DOUBLE_EQ(s.lr.rate(148638), 0.01);
  EXPECT_NEAR(s.lr.rate(148639), 0.001, 1e-15);
  EXPECT_NEAR(s.lr.rate(297278), 0.0001, 1e-16);
  EXPECT_NEAR(s.lr.rate(450419), 0.00001, 1e-17);
  EXPECT_EQ(s.test_iter, 2503);      // ceil(320292 / 128): a form batch sets both
  EXPECT_EQ(s.test_interval, 7507);  // 1 epoch
  EXPECT_EQ(s.snapshot, 7507);
  EXPECT_EQ(s.display, 40);  // min(450420 / 480 = 938, ceil(5000 / 128) = 40)
  EXPECT_DOUBLE_EQ(s.weight_decay, 1e-4);
  EXPECT_DOUBLE_EQ(s.momentum, 0.9);
  const std::string proto = solver_prototxt(s);  // engine/caffe_model.h, through TextFormat
  EXPECT_NE(proto.find("stepsize: 148639"), std::string::npos) << proto;
  EXPECT_NE(proto.find("lr_policy: \"step\""), std::string::npos) << proto;
}

TEST(DigitsSchedule, DefaultsFromTheNetworkAndIntervals) {
  DigitsSolverForm form;  // 30 epochs, batch from the net (GoogLeNet 32 / 16)
  form.snapshot_interval = 0.5;
  const SolverSettings s = digits_solver(form, 1000, 250, 32, 16);
  EXPECT_EQ(s.train_iter, 32);
  EXPECT_EQ(s.max_iter, 960);
  EXPECT_EQ(s.snapshot, 16);
  EXPECT_EQ(s.test_iter, 16);
  EXPECT_EQ(s.display, 4);  // min(960 / 240, ceil(5000 / 32) = 157)
  form.val_interval = 100;  // beyond training: validate at the end only
  EXPECT_EQ(digits_solver(form, 1000, 250, 32, 16).test_interval, 960);
  EXPECT_THROW(digits_solver(form, 0, 0, 32, 16), Error);
  EXPECT_THROW(parse_lr_policy("cosine"), Error);
  EXPECT_EQ(parse_lr_policy("multistep"), LrPolicy::kMultiStep);
}

TEST(DigitsSchedule, EveryPolicyAtDigitsDefaults) {
  DigitsSolverForm f;
  f.epochs = 10;
  f.batch_size = 10;
  auto make = [&](LrPolicy p) {
    f.policy = p;
    return digits_solver(f, 1000, 0, 0, 0);  // max_iter 1000, scale 10
  };
  const double b = 0.01;
  EXPECT_DOUBLE_EQ(make(LrPolicy::kFixed).lr.rate(700), b);
  const SolverSettings ms = make(LrPolicy::kMultiStep);
  EXPECT_EQ(ms.lr.stepvalues, (std::vector<std::int64_t>{500, 850}));
  EXPECT_DOUBLE_EQ(ms.lr.rate(499), b);
  EXPECT_DOUBLE_EQ(ms.lr.rate(500), b * 0.5);
  EXPECT_DOUBLE_EQ(ms.lr.rate(900), b * 0.25);
  // exp: gamma^(1/scale) per iteration = 0.95 per percent of training.
  EXPECT_NEAR(make(LrPolicy::kExp).lr.rate(500), b * std::pow(0.95, 50), 1e-15);
  // inv: gamma / scale, power 0.5.
  EXPECT_NEAR(make(LrPolicy::kInv).lr.rate(500), b * std::pow(1 + 0.01 * 500, -0.5), 1e-15);
  // poly: power 3 over max_iter.
  EXPECT_NEAR(make(LrPolicy::kPoly).lr.rate(500), b * 0.125, 1e-15);
  EXPECT_NEAR(make(LrPolicy::kPoly).lr.rate(1000), 0.0, 1e-15);
  // sigmoid: stepsize 50 % of training, gamma -0.1 / scale: half the rate at mid-training.
  const SolverSettings sg = make(LrPolicy::kSigmoid);
  EXPECT_EQ(sg.lr.stepsize, 500);
  EXPECT_NEAR(sg.lr.rate(500), b / 2, 1e-15);
  EXPECT_NEAR(sg.lr.rate(0), b / (1 + std::exp(-5.0)), 1e-15);
  EXPECT_LT(sg.lr.rate(1000), b * 0.01);
}

// data (N=1, 2 values) -> InnerProduct(2) -> SoftmaxWithLoss; weights lr 1 decay 1, bias lr 2 decay 0.
TEST(SgdSolver, MomentumAndDecayMatchAHandComputation) {
  NetSpec spec;
  spec.name = "tiny";
  models::add_fc(spec, "fc", "data", 2, models::constant(0.f), 0.f);
  models::add_loss(spec, "loss", "fc", "loss", 1.f);
  PlanOptions o;
  o.batch = 1;
  o.channels = 2;
  o.height = o.width = 1;
  CpuNet<double> net(plan_net(spec, o));
  double* w = net.param(0);
  double* bias = net.param(1);
  w[0] = 0.5, w[1] = -0.25, w[2] = 0.125, w[3] = 1.0;
  bias[0] = 0.1, bias[1] = -0.1;
  net.data()[0] = 1.0, net.data()[1] = 2.0;
  net.labels()[0] = 1;
  SolverSettings s;
  s.lr.policy = LrPolicy::kFixed;
  s.lr.base_lr = 0.1;
  s.momentum = 0.9;
  s.weight_decay = 0.01;
  s.iter_size = 1;
  SgdSolver<double> solver(net, s);
  // Hand computation, two steps.
  double W[4] = {0.5, -0.25, 0.125, 1.0}, B[2] = {0.1, -0.1}, vW[4] = {}, vB[2] = {};
  const double x[2] = {1.0, 2.0};
  for (int step = 0; step < 2; ++step) {
    const double z0 = W[0] * x[0] + W[1] * x[1] + B[0], z1 = W[2] * x[0] + W[3] * x[1] + B[1];
    const double m = std::max(z0, z1), e0 = std::exp(z0 - m), e1 = std::exp(z1 - m);
    const double p[2] = {e0 / (e0 + e1), e1 / (e0 + e1)};
    const double d[2] = {p[0], p[1] - 1.0};
    for (int k = 0; k < 2; ++k) {
      for (int j = 0; j < 2; ++j) {
        const double g = d[k] * x[j] + 0.01 * 1.0 * W[k * 2 + j];  // decay_mult 1
        vW[k * 2 + j] = 0.9 * vW[k * 2 + j] + 0.1 * 1.0 * g;       // lr_mult 1
        W[k * 2 + j] -= vW[k * 2 + j];
      }
      vB[k] = 0.9 * vB[k] + 0.1 * 2.0 * d[k];  // lr_mult 2, decay_mult 0
      B[k] -= vB[k];
    }
    const double loss = solver.step([](int) {});
    EXPECT_NEAR(loss, -std::log(p[1]), 1e-12);
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(w[i], W[i], 1e-12) << i;
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(bias[i], B[i], 1e-12) << i;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(net.momentum()[net.plan().params[0].offset + i], vW[i], 1e-12);
  EXPECT_EQ(solver.iter(), 2);
}

TEST(SgdSolver, LeNetStepsReduceTheLossOnAFixedBatch) {
  PlanOptions o;
  o.channels = 1;
  o.height = o.width = 28;
  o.batch = 16;
  o.num_classes = 10;
  CpuNet<float> net(plan_net(models::lenet(), o));
  net.init_params(7);
  std::mt19937 rng(3);
  for (int i = 0; i < 16 * 28 * 28; ++i) net.data()[i] = float(rng() % 256) * 0.0125f;
  for (int i = 0; i < 16; ++i) net.labels()[i] = i % 10;
  DigitsSolverForm form;
  form.batch_size = 16;
  SolverSettings s = digits_solver(form, 16 * 100, 0, 64, 32);
  SgdSolver<float> solver(net, s);
  const float first = solver.step([](int) {});
  float last = first;
  for (int i = 0; i < 30; ++i) last = solver.step([](int) {});
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, 0.5f * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace incept

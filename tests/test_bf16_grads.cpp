// Issue #12: a bf16 GPU net stores its parameter gradients in bf16 (each layer's weight and bias
// gradient is accumulated in fp32 and rounded once to bf16; the SGD update then reads them in
// fp32 against fp32 master weights and momentum). Does that rounding cost accuracy? Here the CPU
// reference trains LeNet on real Fashion-MNIST images twice from the same initialization, with
// the same batches and DIGITS' solver (SGD, momentum 0.9, weight decay; its step policy keeps the
// base rate 0.01 over this short run): once with fp32 gradients, once with every parameter
// gradient rounded to bf16 (round to nearest even, what the GPU's conversion does) before each
// update. Everything else is fp32, so the difference is the gradient storage alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "data/idx.h"
#include "engine/cpu_net.h"
#include "engine/solver.h"
#include "kernels/dtype_gpu.h"
#include "kernels/elementwise.h"
#include "models/models.h"

namespace incept {
namespace {

struct Split {
  data::IdxArray images, labels;
};

struct TrainRun {
  std::vector<float> losses;  // training loss per step
  double test_accuracy = 0;   // on the held-out images
  double test_loss = 0;
  std::int64_t rounded = 0;  // gradient values the bf16 rounding changed
};

constexpr int kBatch = 64;

void load(CpuNet<float>& net, const Split& s, std::int64_t first) {
  const std::int64_t n = s.images.dims[0], pixels = 28 * 28;
  for (int b = 0; b < kBatch; ++b) {
    const std::int64_t i = (first + b) % n;
    for (std::int64_t p = 0; p < pixels; ++p)
      net.data()[b * pixels + p] = float(s.images.values[std::size_t(i * pixels + p)]) * 0.00390625f;
    net.labels()[b] = s.labels.values[std::size_t(i)];
  }
}

// `offset`: the first training image (another batch order, for the noise of the same training).
TrainRun train(const Split& train_set, const Split& test_set, int steps, bool bf16_grads,
               std::int64_t offset = 0) {
  PlanOptions o;
  o.channels = 1;
  o.height = o.width = 28;
  o.batch = kBatch;
  o.num_classes = 10;
  CpuNet<float> net(plan_net(models::lenet(), o));
  net.init_params(11);
  DigitsSolverForm form;
  form.batch_size = kBatch;
  form.base_lr = 0.01;
  SgdSolver<float> solver(net, digits_solver(form, std::int64_t(steps) * kBatch, 0, kBatch, kBatch));
  TrainRun r;
  for (int it = 0; it < steps; ++it) {
    net.zero_grads();
    load(net, train_set, offset + std::int64_t(it) * kBatch);
    r.losses.push_back(net.forward(std::uint64_t(it)));
    net.backward();
    if (bf16_grads) {  // what GpuNetOptions::round_grads_bf16 runs on the GPU
      const std::vector<float> raw(net.grads().begin(), net.grads().end());
      kernels::round_to_bf16_ref(raw.size(), net.grads().data());
      for (std::size_t i = 0; i < raw.size(); ++i) r.rounded += net.grads()[i] != raw[i];
    }
    solver.apply_update();
    solver.set_iter(it + 1);
  }
  // Held-out accuracy: the classifier's arg max over the test images, in whole batches.
  PlanOptions v = o;
  v.stage = Stage::kVal;
  CpuNet<float> eval(plan_net(models::lenet(), v));
  std::copy(net.params().begin(), net.params().end(), eval.params().begin());
  const std::int64_t n = test_set.images.dims[0] / kBatch * kBatch;
  double correct = 0, loss = 0;
  for (std::int64_t first = 0; first < n; first += kBatch) {
    load(eval, test_set, first);
    eval.forward();
    correct += eval.output("accuracy") * kBatch;
    loss += eval.output("loss") * kBatch;
  }
  r.test_accuracy = correct / double(n);
  r.test_loss = loss / double(n);
  return r;
}

// The rounding itself: to nearest, ties to even, as the device's __float2bfloat16_rn.
TEST(Bf16Gradients, RoundToBf16RoundsToNearestEven) {
  std::vector<float> x = {1.f,  1.f + 0x1p-8f, 1.f + 3 * 0x1p-8f, 1.f + 0x1p-8f + 0x1p-20f, -2.5f,
                          0.1f, 3.4e38f};
  kernels::round_to_bf16_ref(x.size(), x.data());
  EXPECT_EQ(x[0], 1.f);
  EXPECT_EQ(x[1], 1.f);             // tie, even below
  EXPECT_EQ(x[2], 1.f + 0x1p-6f);   // tie, even above
  EXPECT_EQ(x[3], 1.f + 0x1p-7f);   // past the tie: up
  EXPECT_EQ(x[4], -2.5f);           // exact in bf16
  EXPECT_EQ(x[5], 0.10009765625f);  // 0.1's nearest bf16
  EXPECT_TRUE(std::isinf(x[6]));    // beyond bf16's largest finite
}

TEST(Bf16Gradients, LeNetOnFashionMnistLearnsAsWellAsWithFp32Gradients) {
  const std::string dir = data::fashion_mnist_dir();
  if (!std::ifstream(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed (" << dir << ")";
  Split train_set{data::read_idx(dir + "/train-images-idx3-ubyte.gz"),
                  data::read_idx(dir + "/train-labels-idx1-ubyte.gz")};
  Split test_set{data::read_idx(dir + "/t10k-images-idx3-ubyte.gz"),
                 data::read_idx(dir + "/t10k-labels-idx1-ubyte.gz")};
  test_set.images.dims[0] = test_set.labels.dims[0] = 2048;  // the first 2,048 test images
  const int steps = 400;                                     // 25,600 images, about 0.4 epoch
  const TrainRun f = train(train_set, test_set, steps, false);
  const TrainRun b = train(train_set, test_set, steps, true);
  const TrainRun n = train(train_set, test_set, steps, false, 30000);  // fp32, other images: the noise
  auto mean_tail = [](const std::vector<float>& v) {  // mean training loss of the last 50 steps
    double s = 0;
    for (std::size_t i = v.size() - 50; i < v.size(); ++i) s += v[i];
    return s / 50;
  };
  std::printf("  fp32 gradients: test accuracy %.2f %%, test loss %.4f, last-50 training loss %.4f\n",
              100 * f.test_accuracy, f.test_loss, mean_tail(f.losses));
  std::printf(
      "  bf16 gradients: test accuracy %.2f %%, test loss %.4f, last-50 training loss %.4f "
      "(%lld gradient values rounded)\n",
      100 * b.test_accuracy, b.test_loss, mean_tail(b.losses), static_cast<long long>(b.rounded));
  std::printf("  fp32 gradients, other batches (run-to-run noise): test accuracy %.2f %%, test loss %.4f\n",
              100 * n.test_accuracy, n.test_loss);
  // The rounding really happened (most fp32 gradients are not bf16 values)...
  EXPECT_GT(b.rounded, std::int64_t(steps) * 10000);
  // ... both runs learned (chance is 10 %) ...
  EXPECT_GT(f.test_accuracy, 0.70);
  // ... and bf16 storage costs no accuracy: within run-to-run noise of the same training.
  EXPECT_GE(b.test_accuracy, f.test_accuracy - 0.015);
  EXPECT_LE(b.test_loss, f.test_loss * 1.03 + 0.01);
  EXPECT_NEAR(mean_tail(b.losses), mean_tail(f.losses), 0.03 + 0.03 * mean_tail(f.losses));
}

}  // namespace
}  // namespace incept

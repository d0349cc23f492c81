// The GPU net against the CPU reference net (double precision) on the same plan, weights,
// inputs and dropout masks: every scalar output and every parameter gradient, for LeNet and
// for DIGITS' GoogLeNet at batch 4, in fp32 and bf16. Then the step itself: graph replay is
// bitwise identical to eager, two runs with the same seed are bitwise identical, and SGD on
// the GPU lowers the loss.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine/cpu_net.h"
#include "engine/gpu_net.h"
#include "kernels/dtype_gpu.h"
#include "models/models.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using kernels::DType;

NetPlan make_plan(const NetSpec& spec, int batch, int classes) {
  PlanOptions o;
  o.stage = Stage::kTrain;
  o.batch = batch;
  o.num_classes = classes;
  return plan_net(spec, o);
}

float round_bf16(float v) { return kernels::bf16_bits_to_f32(kernels::f32_to_bf16_bits(v)); }

// Uploads dense fp32 values as the net's activation dtype.
void upload_input(const GpuNet& g, const std::vector<float>& x) {
  if (g.options().dtype == DType::kF32) {
    CUDA_CHECK(cudaMemcpy(g.data(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  } else {
    std::vector<std::uint16_t> b(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) b[i] = kernels::f32_to_bf16_bits(x[i]);
    CUDA_CHECK(cudaMemcpy(g.data(), b.data(), b.size() * 2, cudaMemcpyHostToDevice));
  }
}

struct Comparison {
  double worst_grad = 0;
  std::string worst_param;
  double loss_err = 0;
};

// One forward+backward on both backends from identical weights/inputs/labels/dropout keys.
Comparison compare_with_cpu(const NetSpec& spec, int batch, int classes, DType dtype, std::uint64_t seed) {
  NetPlan plan = make_plan(spec, batch, classes);
  CpuNet<double> cpu(plan);
  cpu.init_params(seed);
  cpu.set_dropout_seed(seed + 1);
  // Weights: the fp32 (or bf16) values the GPU computes with, given to both.
  std::vector<float> w(plan.param_elems);
  for (std::size_t i = 0; i < w.size(); ++i) {
    w[i] = float(cpu.params()[i]);
    if (dtype == DType::kBF16) w[i] = round_bf16(w[i]);
    cpu.params()[i] = w[i];
  }
  const Nchw in = plan.blobs[plan.data_blob].shape;
  auto x = testing::random_floats(std::size_t(in.count()), seed + 2, -2.f, 2.f);
  if (dtype == DType::kBF16)
    for (float& v : x) v = round_bf16(v);
  std::copy(x.begin(), x.end(), cpu.data());
  std::vector<std::int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = std::int32_t((seed * 7 + i * 13) % classes);
  std::copy(labels.begin(), labels.end(), cpu.labels());

  GpuNetOptions opt;
  opt.dtype = dtype;
  opt.dropout_seed = seed + 1;
  GpuNet gpu(plan, opt);
  gpu.set_params(w);
  upload_input(gpu, x);
  CUDA_CHECK(cudaMemcpy(gpu.labels(), labels.data(), labels.size() * 4, cudaMemcpyHostToDevice));
  const std::uint64_t step = 3;
  gpu.train_step(StepValues{.iteration = step}, /*graph=*/false, /*update=*/false);

  cpu.zero_grads();
  cpu.forward(step);
  cpu.backward();

  Comparison c;
  for (const auto& [name, v] : gpu.scalar_outputs()) {
    const double ref = cpu.output(name);
    const double err = std::fabs(v - ref) / std::max(std::fabs(ref), 1e-6);
    std::printf("  %-22s gpu %.6f cpu %.6f rel %.2e\n", name.c_str(), v, ref, err);
    c.loss_err = std::max(c.loss_err, err);
  }
  std::vector<float> g(plan.param_elems);
  gpu.get_grads(g);
  for (std::size_t p = 0; p < plan.params.size(); ++p) {
    const ParamPlan& pp = plan.params[p];
    double num = 0, den = 0;
    for (std::int64_t i = 0; i < pp.count; ++i) {
      const double r = cpu.grads()[pp.offset + i], d = g[pp.offset + i] - r;
      num += d * d;
      den += r * r;
    }
    const double err = std::isfinite(num) ? std::sqrt(num) / std::max(std::sqrt(den), 1e-20) : 1e30;
    if (den > 0 && err > c.worst_grad) {
      c.worst_grad = err;
      c.worst_param = pp.layer + "[" + std::to_string(pp.index) + "]";
    }
  }
  std::printf("  worst parameter gradient: %s rel %.2e\n", c.worst_param.c_str(), c.worst_grad);
  return c;
}

TEST(GpuNet, LeNetMatchesCpuFp32) {
  INCEPT_REQUIRE_GPU();
  const Comparison c = compare_with_cpu(models::lenet(), 16, 10, DType::kF32, 11);
  EXPECT_LT(c.loss_err, 1e-5);
  EXPECT_LT(c.worst_grad, 1e-4) << c.worst_param;
}

TEST(GpuNet, LeNetMatchesCpuBf16) {
  INCEPT_REQUIRE_GPU();
  const Comparison c = compare_with_cpu(models::lenet(), 16, 10, DType::kBF16, 12);
  EXPECT_LT(c.loss_err, 2e-2);
  EXPECT_LT(c.worst_grad, 3e-2) << c.worst_param;
}

TEST(GpuNet, GoogLeNetBatch4MatchesCpuFp32) {
  INCEPT_REQUIRE_GPU();
  const Comparison c = compare_with_cpu(models::googlenet(), 4, 1000, DType::kF32, 21);
  EXPECT_LT(c.loss_err, 1e-4);
  EXPECT_LT(c.worst_grad, 1e-3) << c.worst_param;
}

TEST(GpuNet, GoogLeNetBatch4MatchesCpuBf16) {
  INCEPT_REQUIRE_GPU();
  const Comparison c = compare_with_cpu(models::googlenet(), 4, 1000, DType::kBF16, 22);
  EXPECT_LT(c.loss_err, 3e-2);
  EXPECT_LT(c.worst_grad, 5e-2) << c.worst_param;
}

// Runs `steps` SGD steps from a fixed init on a fixed batch; returns the final parameters
// and the loss after each step.
std::pair<std::vector<float>, std::vector<float>> run_steps(const NetSpec& spec, DType dtype, bool graph, int steps) {
  NetPlan plan = make_plan(spec, 16, 10);
  GpuNetOptions opt;
  opt.dtype = dtype;
  opt.deterministic = true;
  opt.dropout_seed = 5;
  GpuNet gpu(plan, opt);
  gpu.init_params(42);
  const Nchw in = plan.blobs[plan.data_blob].shape;
  upload_input(gpu, testing::random_floats(std::size_t(in.count()), 43, 0.f, 1.f));
  std::vector<std::int32_t> labels(16);
  for (int i = 0; i < 16; ++i) labels[i] = i % 10;
  CUDA_CHECK(cudaMemcpy(gpu.labels(), labels.data(), 64, cudaMemcpyHostToDevice));
  std::vector<float> losses;
  for (int s = 0; s < steps; ++s) {
    gpu.train_step(StepValues{.iteration = std::uint64_t(s), .lr = 0.01f, .momentum = 0.9f,
                              .weight_decay = 1e-4f},
                   graph);
    losses.push_back(gpu.output("loss"));
  }
  std::vector<float> w(plan.param_elems);
  gpu.get_params(w);
  return {w, losses};
}

TEST(GpuNet, GraphReplayIsBitwiseEager) {
  INCEPT_REQUIRE_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) {
    auto [w_eager, l_eager] = run_steps(models::lenet(), t, false, 5);
    auto [w_graph, l_graph] = run_steps(models::lenet(), t, true, 5);
    EXPECT_EQ(0, std::memcmp(w_eager.data(), w_graph.data(), w_eager.size() * 4)) << kernels::dtype_name(t);
    EXPECT_EQ(l_eager, l_graph) << kernels::dtype_name(t);
  }
}

TEST(GpuNet, SameSeedSameBits) {
  INCEPT_REQUIRE_GPU();
  auto [w1, l1] = run_steps(models::lenet(), DType::kF32, true, 5);
  auto [w2, l2] = run_steps(models::lenet(), DType::kF32, true, 5);
  EXPECT_EQ(0, std::memcmp(w1.data(), w2.data(), w1.size() * 4));
  EXPECT_EQ(l1, l2);
}

TEST(GpuNet, SgdLowersTheLoss) {
  INCEPT_REQUIRE_GPU();
  auto [w, losses] = run_steps(models::lenet(), DType::kBF16, true, 40);
  std::printf("  loss %.4f -> %.4f\n", losses.front(), losses.back());
  EXPECT_LT(losses.back(), 0.5f * losses.front());
}

}  // namespace
}  // namespace incept

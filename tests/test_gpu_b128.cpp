// DIGITS' GoogLeNet at the configuration bench_train_step times (issue #12, "correctness at the
// benchmarked configuration"): batch 128, 1000 classes, the options recommended_options gives
// for the dtype (channels-last from sm_70, fp32 on 3xTF32 GEMMs or bf16, cuDNN algorithms
// chosen by timing), and fp32 with FMA arithmetic only (--fp32-math strict), the step as one
// CUDA graph, and bench_train_step's solver values.
// - Graph replay is bitwise the eager step, fp32 (both) and bf16: losses, weights and momentum after
//   three SGD steps (two eager runs first, so run-to-run nondeterminism is told apart).
// - fp32: three SGD steps follow the CPU reference in double (testing/ShardedCpuNet, batch 128
//   split over threads by images): every loss, every parameter blob's gradient at every step
//   and every blob's weight change after the steps within the bounds of kFp32.
// - bf16: the same against a reference that rounds where the GPU rounds (bf16 weights, inputs,
//   layer outputs, gradients), within kBf16. A whole-net comparison in bf16 is noisy (values on
//   either side of a rounding boundary flip ReLU masks and max-pool winners downstream, which
//   moves whole gradient elements: a few 1e-2 relative per blob), so the tight per-layer
//   statistic is the least-squares scale of the GPU's gradient against the reference's, which
//   that noise leaves near 1 and a gradient scaled by 1.1 moves to 1.1. The test checks that: it
//   scales each layer's GPU gradient (and weight change) by 1.1 and expects the bound to fail.
// - gpu_b128_layers.cpp: every layer alone in bf16, fed the reference's inputs.
// The CPU reference at batch 128 takes ~45 s per forward+backward on one core (measured on the
// 2-core development machine, fwd 17 s, bwd 29 s, 7 GB); ShardedCpuNet runs it as 16 threads
// of 8 images on a 16-core host, a few seconds per step.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "engine/fillers.h"
#include "gpu_b128.h"
#include "kernels/sgd_ref.h"
#include "testing/sharded_cpu_net.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using kernels::DType;
constexpr int kSteps = 3;

void upload_labels(GpuNet& net, const std::vector<std::int32_t>& labels) {
  CUDA_CHECK(cudaMemcpy(net.labels(), labels.data(), labels.size() * 4, cudaMemcpyHostToDevice));
}

// ---- graph replay == eager -------------------------------------------------------------------

struct StepsRun {
  std::vector<float> losses;  // every scalar output after every step
  std::vector<float> weights, momentum;
};

StepsRun run_steps(GpuNet& net, const std::vector<float>& w0, const std::vector<float>& x,
                   const std::vector<std::int32_t>& labels, bool graph) {
  net.set_params(w0);
  net.zero_momentum();
  net.set_input(x);
  upload_labels(net, labels);
  StepsRun r;
  for (int s = 0; s < kSteps; ++s) {
    net.train_step(b128::step_values(s), graph);
    for (const auto& [name, v] : net.scalar_outputs()) r.losses.push_back(v);
  }
  r.weights.resize(net.plan().param_elems);
  r.momentum.resize(net.plan().param_elems);
  net.get_params(r.weights);
  net.get_momentum(r.momentum);
  return r;
}

// "" when a and b hold the same bits, else how many elements differ and in which blobs first.
std::string bit_differences(const NetPlan& plan, const std::vector<float>& a, const std::vector<float>& b) {
  std::size_t total = 0;
  std::string where;
  int listed = 0;
  for (const ParamPlan& pp : plan.params) {
    std::size_t n = 0;
    for (std::int64_t i = pp.offset; i < pp.offset + pp.count; ++i) n += std::memcmp(&a[i], &b[i], 4) != 0;
    if (n && listed++ < 5)
      where += " " + pp.layer + "[" + std::to_string(pp.index) + "]:" + std::to_string(n);
    total += n;
  }
  return total ? std::to_string(total) + " elements differ, first in" + where : "";
}

void expect_same_bits(const std::string& what, const NetPlan& plan, const StepsRun& a, const StepsRun& b) {
  const bool losses = a.losses.size() == b.losses.size() &&
                      std::memcmp(a.losses.data(), b.losses.data(), a.losses.size() * 4) == 0;
  const std::string w = bit_differences(plan, a.weights, b.weights);
  const std::string m = bit_differences(plan, a.momentum, b.momentum);
  std::printf("  %-40s losses %s, weights %s, momentum %s\n", what.c_str(), losses ? "same" : "DIFFER",
              w.empty() ? "same" : w.c_str(), m.empty() ? "same" : m.c_str());
  EXPECT_TRUE(losses) << what;
  EXPECT_EQ(w, "") << what << ": weights";
  EXPECT_EQ(m, "") << what << ": momentum";
}

TEST(GoogLeNetB128, GraphReplayIsBitwiseEager) {
  INCEPT_REQUIRE_GPU();
  const NetPlan plan = b128::plan();
  std::vector<float> w0(plan.param_elems);
  fill_params(plan, 1, w0.data());
  const std::vector<float> x = b128::images(2);
  const std::vector<std::int32_t> labels = b128::labels(3);
  for (const auto& [t, strict] :
       {std::pair{DType::kBF16, false}, {DType::kF32, false}, {DType::kF32, true}}) {
    std::printf("%s%s:\n", kernels::dtype_name(t), strict ? " (strict: FMA only)" : "");
    GpuNet net(plan, b128::options(t, strict));
    std::printf("  %s\n", net.memory_report().c_str());
    for (const std::string& line : net.algorithm_report()) std::printf("  algo %s\n", line.c_str());
    const StepsRun eager = run_steps(net, w0, x, labels, false);
    const StepsRun again = run_steps(net, w0, x, labels, false);
    const StepsRun captured = run_steps(net, w0, x, labels, true);  // the first step captures the graph
    const StepsRun replayed = run_steps(net, w0, x, labels, true);
    // If eager differs from eager, the configuration itself is not deterministic (an algorithm
    // chosen by timing that adds in a varying order, see the algo lines): graph == eager can
    // then hold only by chance.
    expect_same_bits("eager, run again", plan, eager, again);
    expect_same_bits("graph (captured) vs eager", plan, eager, captured);
    expect_same_bits("graph (replayed) vs eager", plan, eager, replayed);
  }
}

// ---- SGD steps against the CPU reference ------------------------------------------------------

// Bounds of one comparison of parameter-shaped values (gradients, weight changes).
struct Limits {
  double median;  // median over parameter blobs of the relative L2 error
  double worst;   // every parameter blob's relative L2 error
  double slope;   // every layer: |s - 1|, s the least-squares scale of GPU vs reference
};
struct Bounds {
  double loss_rel;       // every scalar loss at every step, relative
  Limits first_step;     // gradients of step 0: the same weights on both sides
  Limits later_steps;    // gradients of later steps: weights already apart by the earlier steps
  Limits weight_change;  // weights after the last step minus the initial weights
};
// fp32, Caffe precision. What two correct computations give, fp32 against double (CpuNet<float>
// against the double reference, these inputs, batch 128, 3 steps), as median / worst blob /
// worst scale: losses <= 8.2e-7; gradients of step 0 1.8e-4 / 1.0e-3 (conv1) / 1.2e-4, step 1
// 5.7e-4 / 6.4e-3 / 1.2e-3, step 2 2.7e-3 / 7.5e-3 / 1.6e-3 (small differences grow through
// ReLU masks step by step); weight change 6.0e-4 / 2.0e-3 / 5.0e-4. The GPU sums in other
// orders (cuBLAS, cuDNN), so the bounds leave it a few times that.
constexpr Bounds kFp32{1e-5, {5e-4, 5e-3, 1e-3}, {1e-2, 5e-2, 1e-2}, {2e-3, 1e-2, 3e-3}};
// bf16, against the reference that rounds where the GPU stores bf16 (ShardedCpuNet::
// set_round_bf16). Two correct bf16 computations still part (a value on either side of a
// rounding boundary, then flipped ReLU masks and max-pool winners); measured between a CPU
// float net that rounds the same way and that reference, batch 128, 2 steps: losses <= 2.8e-5;
// step 0 2.5e-2 / 5.3e-2 (conv1) / 9.6e-3; step 1 3.6e-2 / 1.1e-1 / 3.0e-2; weight change
// 2.1e-2 / 5.2e-2 / 1.3e-2. The scale bounds of step 0 and of the weight change stay below
// ~0.045, so that 1.1 x a layer's gradient is caught (expect_scaled_layers_fail checks it).
constexpr Bounds kBf16{5e-4, {8e-2, 0.2, 3e-2}, {0.15, 0.4, 6e-2}, {8e-2, 0.3, 4e-2}};

struct LayerResult {
  std::string name;
  std::vector<double> blob_rel;  // weights, bias
  b128::Agreement all;           // the layer's blobs together
  bool ok = true;
};

// Compares got with ref blob by blob and layer by layer. allowed[p] (if not empty) raises blob
// p's worst-case bound (fp32 resolution of a weight change, see below). got_scale multiplies got
// (the 1.1 sensitivity check) for the layers in `only` (all when empty).
template <typename G>
std::vector<LayerResult> compare_layers(const NetPlan& plan, const G& got, const std::vector<double>& ref,
                                        const Limits& b, const std::vector<double>& allowed = {},
                                        double got_scale = 1.0, const std::string& only = "") {
  std::vector<LayerResult> out;
  for (const b128::ParamLayer& pl : b128::param_layers(plan)) {
    if (!only.empty() && pl.name != only) continue;
    LayerResult r;
    r.name = pl.name;
    for (int p : pl.params) {
      const ParamPlan& pp = plan.params[p];
      std::vector<double> g(got.begin() + pp.offset, got.begin() + pp.offset + pp.count);
      std::vector<double> e(ref.begin() + pp.offset, ref.begin() + pp.offset + pp.count);
      r.blob_rel.push_back(b128::agreement(g, e, got_scale).rel);
      r.ok = r.ok && r.blob_rel.back() <= std::max(b.worst, allowed.empty() ? 0.0 : allowed[p]);
    }
    r.all = b128::agreement(b128::layer_values(plan, pl, got), b128::layer_values(plan, pl, ref), got_scale);
    r.ok = r.ok && std::fabs(r.all.slope - 1) <= b.slope;
    out.push_back(r);
  }
  return out;
}

// Expects every layer within the bounds (and the blobs' median), prints a table or a summary.
void expect_layers_ok(const std::string& what, const std::vector<LayerResult>& layers, const Limits& b,
                      bool table, double median_bound) {
  std::vector<double> rels;
  double worst = 0, worst_slope = 0;
  std::string worst_name, worst_slope_name;
  if (table)
    std::printf("  %s\n  %-32s %10s %10s %9s %9s\n", what.c_str(), "layer", "w rel", "b rel", "scale", "+-");
  for (const LayerResult& r : layers) {
    for (double e : r.blob_rel) {
      rels.push_back(e);
      if (e > worst) worst = e, worst_name = r.name;
    }
    if (std::fabs(r.all.slope - 1) > worst_slope)
      worst_slope = std::fabs(r.all.slope - 1), worst_slope_name = r.name;
    if (table)
      std::printf("  %-32s %10.2e %10.2e %9.5f %9.1e%s\n", r.name.c_str(), r.blob_rel[0],
                  r.blob_rel.size() > 1 ? r.blob_rel[1] : 0.0, r.all.slope, r.all.slope_se,
                  r.ok ? "" : "  FAIL");
    EXPECT_TRUE(r.ok) << what << ": " << r.name << " (relative errors " << r.blob_rel[0]
                      << (r.blob_rel.size() > 1 ? ", " + std::to_string(r.blob_rel[1]) : "") << ", scale "
                      << r.all.slope << ")";
  }
  const double med = b128::median(rels);
  std::printf(
      "  %s: blob relative error median %.2e (limit %.0e), worst %.2e (%s, limit %.0e); scale worst |s-1| "
      "%.2e (%s, limit %.0e)\n",
      what.c_str(), med, median_bound, worst, worst_name.c_str(), b.worst, worst_slope,
      worst_slope_name.c_str(), b.slope);
  EXPECT_LE(med, median_bound) << what;
}

// Each layer's GPU values scaled by 1.1 must fail the comparison: the bounds can see a wrong
// gradient of one layer, not only a broken net.
template <typename G>
void expect_scaled_layers_fail(const std::string& what, const NetPlan& plan, const G& got,
                               const std::vector<double>& ref, const Limits& b,
                               const std::vector<double>& allowed) {
  int caught = 0, layers = 0;
  for (const b128::ParamLayer& pl : b128::param_layers(plan)) {
    const auto r = compare_layers(plan, got, ref, b, allowed, 1.1, pl.name);
    ++layers;
    caught += !r[0].ok;
    EXPECT_FALSE(r[0].ok) << what << ": " << pl.name << "'s values x 1.1 pass the bounds (scale "
                          << r[0].all.slope << ")";
  }
  std::printf("  %s: %d of %d layers scaled by 1.1 fail the bounds\n", what.c_str(), caught, layers);
}

void expect_losses_close(int step, const std::vector<std::pair<std::string, float>>& gpu,
                         const std::vector<std::pair<std::string, double>>& ref, double bound) {
  ASSERT_EQ(gpu.size(), ref.size());
  for (const auto& [name, v] : gpu) {
    const auto r = std::find_if(ref.begin(), ref.end(), [&](const auto& o) { return o.first == name; });
    ASSERT_NE(r, ref.end()) << name;
    const double rel = std::fabs(v - r->second) / std::max(std::fabs(r->second), 1e-6);
    std::printf("  step %d %-12s gpu %.6f cpu %.6f rel %.2e (limit %.0e)\n", step, name.c_str(), v, r->second,
                rel, bound);
    EXPECT_LE(rel, bound) << "step " << step << " " << name;
  }
}

// kSteps SGD steps of the GPU net (graph) and of the CPU reference from the same weights, input,
// labels and dropout masks; the reference keeps double master weights and, in bf16, computes
// with them rounded to bf16 as the GPU computes with its bf16 copy.
void steps_follow_reference(DType dtype, const Bounds& b, bool strict = false) {
  const NetPlan plan = b128::plan();
  const GpuNetOptions opt = b128::options(dtype, strict);
  auto t0 = std::chrono::steady_clock::now();
  GpuNet gpu(plan, opt);
  std::printf("  GPU net built in %.1f s: %s\n", b128::seconds_since(t0), gpu.memory_report().c_str());
  std::vector<float> w0(plan.param_elems);
  fill_params(plan, 7, w0.data());
  gpu.set_params(w0);
  gpu.zero_momentum();
  std::vector<float> x = b128::images(8);
  const std::vector<std::int32_t> labels = b128::labels(9);
  gpu.set_input(x);
  upload_labels(gpu, labels);
  const bool bf16 = dtype == DType::kBF16;
  if (bf16)
    for (float& v : x) v = b128::round_bf16(v);
  testing::ShardedCpuNet cpu(models::googlenet(), plan.options);
  std::printf("  CPU reference: %d threads of %d images\n", cpu.shards(), b128::kBatch / cpu.shards());
  cpu.set_input(x);
  cpu.set_labels(labels);
  cpu.set_dropout_seed(opt.dropout_seed);
  cpu.set_round_bf16(bf16);
  std::vector<double> master(w0.begin(), w0.end()), history(w0.size(), 0.0), compute(w0.size());
  std::vector<float> g(plan.param_elems);
  for (int s = 0; s < kSteps; ++s) {
    const StepValues v = b128::step_values(s);
    gpu.train_step(v, /*graph=*/true);
    const auto gpu_losses = gpu.scalar_outputs();
    gpu.get_grads(g);
    for (std::size_t i = 0; i < master.size(); ++i)
      compute[i] = bf16 ? b128::round_bf16(float(master[i])) : master[i];
    cpu.set_params(compute);
    t0 = std::chrono::steady_clock::now();
    cpu.forward(std::uint64_t(s));
    cpu.backward();
    std::printf("  step %d: CPU reference forward+backward %.1f s\n", s, b128::seconds_since(t0));
    const std::vector<double> gref = cpu.grads();
    expect_losses_close(s, gpu_losses, cpu.scalar_outputs(), b.loss_rel);
    const std::string what = "step " + std::to_string(s) + " gradients";
    const Limits& lim = s == 0 ? b.first_step : b.later_steps;
    expect_layers_ok(what, compare_layers(plan, g, gref, lim), lim, s == 0, lim.median);
    if (s == 0) expect_scaled_layers_fail(what, plan, g, gref, lim, {});
    for (const ParamPlan& pp : plan.params)  // Caffe's SGD (kernels/sgd_ref.h), as the GPU's update
      ref::sgd_update<double>(pp.count, double(v.lr) * pp.lr_mult, v.momentum,
                              double(v.weight_decay) * pp.decay_mult, master.data() + pp.offset,
                              gref.data() + pp.offset, history.data() + pp.offset);
  }
  // The weight change over the steps. The GPU keeps fp32 master weights: a change of a few
  // fp32 steps of the weights can be compared no closer than that, so each blob's bound is at
  // least 3x the error of storing the reference's result in fp32 once.
  std::vector<float> w(plan.param_elems);
  gpu.get_params(w);
  std::vector<double> dgpu(w.size()), dref(w.size()), allowed(plan.params.size());
  std::vector<double> stored(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    dgpu[i] = double(w[i]) - w0[i];
    dref[i] = master[i] - w0[i];
    stored[i] = double(float(master[i])) - w0[i];
  }
  std::vector<double> floors;
  for (std::size_t p = 0; p < plan.params.size(); ++p) {
    const ParamPlan& pp = plan.params[p];
    std::vector<double> a(stored.begin() + pp.offset, stored.begin() + pp.offset + pp.count);
    std::vector<double> e(dref.begin() + pp.offset, dref.begin() + pp.offset + pp.count);
    allowed[p] = 3 * b128::agreement(a, e).rel;
    floors.push_back(allowed[p]);
  }
  const Limits& lim = b.weight_change;
  const double median_bound = std::max(lim.median, b128::median(floors));
  const std::string what = "weight change after " + std::to_string(kSteps) + " steps";
  expect_layers_ok(what, compare_layers(plan, dgpu, dref, lim, allowed), lim, true, median_bound);
  expect_scaled_layers_fail(what, plan, dgpu, dref, lim, allowed);
}

TEST(GoogLeNetB128, Fp32StepsFollowTheCpuReference) {
  INCEPT_REQUIRE_GPU();
  steps_follow_reference(DType::kF32, kFp32);
}

// fp32 with FMA arithmetic only (the Winograd 3x3 layers, conv1's direct kernel): the same bounds.
TEST(GoogLeNetB128, Fp32StrictStepsFollowTheCpuReference) {
  INCEPT_REQUIRE_GPU();
  steps_follow_reference(DType::kF32, kFp32, /*strict=*/true);
}

TEST(GoogLeNetB128, Bf16StepsFollowTheCpuReference) {
  INCEPT_REQUIRE_GPU();
  steps_follow_reference(DType::kBF16, kBf16);
}

}  // namespace
}  // namespace incept

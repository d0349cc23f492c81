// Shared by the parts of test_gpu_b128: DIGITS' GoogLeNet at the benchmarked configuration
// (batch 128, 1000 classes, the net options and solver values bench_train_step times), its
// inputs, and the statistics its comparisons with the CPU reference use.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/gpu_net.h"
#include "engine/net_plan.h"
#include "kernels/dtype_gpu.h"
#include "models/models.h"

namespace incept::b128 {

constexpr int kBatch = 128, kClasses = 1000;

inline NetPlan plan() {
  PlanOptions o;
  o.stage = Stage::kTrain;
  o.batch = kBatch;
  o.num_classes = kClasses;
  return plan_net(models::googlenet(), o);
}

// What bench_train_step runs by default (and the trainer): recommended_options for the dtype;
// strict: fp32 with FMA arithmetic only (--fp32-math strict: no 3xTF32, so the 3x3 layers run
// as Winograd F(2x2, 3x3) on strict GEMMs).
inline GpuNetOptions options(kernels::DType dtype, bool strict = false) {
  GpuNetOptions o = recommended_options(0, dtype);
  if (strict) o.tf32x3 = false;
  std::printf(
      "  options (bench_train_step's): %s %s, tf32 %d, 3xtf32 %d, winograd %d, measured algorithms %d, "
      "deterministic %d, spatial %s\n",
      kernels::dtype_name(o.dtype), o.channels_last ? "channels-last" : "NCHW", o.allow_tf32, o.tf32x3,
      o.allow_winograd, o.measure_algorithms, o.deterministic,
      o.spatial_conv == SpatialConv::kAuto       ? "auto"
      : o.spatial_conv == SpatialConv::kGemm     ? "gemm"
      : o.spatial_conv == SpatialConv::kWinograd ? "winograd"
                                                 : "cudnn");
  return o;
}

// bench_train_step's solver values for step `it`.
inline StepValues step_values(int it) {
  return StepValues{.iteration = std::uint64_t(it), .lr = 0.005f, .momentum = 0.9f, .weight_decay = 5e-5f};
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline float round_bf16(float v) {
  return kernels::bf16_bits_to_f32(kernels::f32_to_bf16_bits(v));
}

// Photo-like inputs, NCHW [kBatch, 3, 224, 224]: per image and channel a few low-frequency
// waves plus noise, within about +-2 like bench_train_step's synthetic input (uniform in
// [-1, 1]). Smooth inputs make the first layers' weight gradients add up over pixels as on real
// images instead of cancelling as on white noise. Not at the scale of raw mean-subtracted pixels
// (+-128): there the auxiliary heads start at a loss of ~15 and the trajectories of two correct
// fp32 computations drift apart ~10x faster (CPU fp32 vs double, batch 16: weight change after
// two steps 2.8e-3 median relative error, against 4.3e-4 after three steps at this scale).
inline std::vector<float> images(std::uint64_t seed) {
  const int hw = 224;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::normal_distribution<float> noise(0.f, 0.13f);
  std::vector<float> x(std::size_t(kBatch) * 3 * hw * hw);
  float* p = x.data();
  for (int n = 0; n < kBatch; ++n)
    for (int c = 0; c < 3; ++c) {
      float fy[3], fx[3], ph[3], a[3];
      for (int k = 0; k < 3; ++k) {
        fy[k] = 6.2832f * (1 + 7 * u(rng)) / hw;
        fx[k] = 6.2832f * (1 + 7 * u(rng)) / hw;
        ph[k] = 6.2832f * u(rng);
        a[k] = 0.33f + 0.33f * u(rng);
      }
      for (int y = 0; y < hw; ++y)
        for (int xx = 0; xx < hw; ++xx) {
          float v = noise(rng);
          for (int k = 0; k < 3; ++k) v += a[k] * std::sin(fy[k] * y + fx[k] * xx + ph[k]);
          *p++ = v;
        }
    }
  return x;
}

inline std::vector<std::int32_t> labels(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> l(kBatch);
  for (auto& v : l) v = std::int32_t(rng() % kClasses);
  return l;
}

// How `got` agrees with `ref` (same length): the relative L2 error ||got - ref|| / ||ref||; the
// least-squares scale s of got ~ s * ref (1 when they agree; a gradient scaled by 1.1 gives
// 1.1 whatever noise rides on it) and its standard error, noise / (||ref|| sqrt(n - 1)).
struct Agreement {
  double rel = 0, slope = 1, slope_se = 0;
  std::size_t n = 0;
};

template <typename A, typename B>
Agreement agreement(const A& got, const B& ref, double got_scale = 1.0) {
  double dd = 0, gr = 0, rr = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double g = double(got[i]) * got_scale, r = double(ref[i]);
    dd += (g - r) * (g - r);
    gr += g * r;
    rr += r * r;
  }
  Agreement a;
  a.n = ref.size();
  if (!std::isfinite(dd + gr)) return Agreement{1e30, 1e30, 1e30, a.n};
  const double norm = std::max(std::sqrt(rr), 1e-30);
  a.rel = std::sqrt(dd) / norm;
  a.slope = rr > 0 ? gr / rr : 0.0;
  double res = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = double(got[i]) * got_scale - a.slope * double(ref[i]);
    res += e * e;
  }
  a.slope_se = std::sqrt(res / double(std::max<std::size_t>(a.n, 2) - 1)) / norm;
  return a;
}

// The parameter blobs of one layer (weights, bias), by plan.params index.
struct ParamLayer {
  std::string name;
  std::vector<int> params;
};

inline std::vector<ParamLayer> param_layers(const NetPlan& plan) {
  std::vector<ParamLayer> out;
  for (std::size_t p = 0; p < plan.params.size(); ++p) {
    if (out.empty() || out.back().name != plan.params[p].layer) out.push_back({plan.params[p].layer, {}});
    out.back().params.push_back(int(p));
  }
  return out;
}

// The values of a layer's parameter blobs, concatenated (padding between blobs left out).
template <typename T>
std::vector<double> layer_values(const NetPlan& plan, const ParamLayer& l, const T& all) {
  std::vector<double> v;
  for (int p : l.params)
    for (std::int64_t i = 0; i < plan.params[p].count; ++i)
      v.push_back(double(all[plan.params[p].offset + i]));
  return v;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace incept::b128

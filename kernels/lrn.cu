// Cross-channel LRN kernels (lrn_gpu.h). One thread per (n, h, w) pixel and chunk of
// channels: it walks its channels with a sliding window sum, so each x is loaded about
// twice (entering the window, and for its own output), with loads coalesced along w.
// The channel chunks (blockIdx.y) give enough threads at batch 8 too.
#include "engine/check.h"
#include "kernels/lrn_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 16;  // channels per thread

// s^-beta; Caffe's beta 0.75 as rsqrt(s) * sqrt(rsqrt(s)) (faster than powf, ~2 ulp).
__device__ inline float pow_neg_beta(float s, float beta) {
  if (beta == 0.75f) {
    const float r = rsqrtf(s);
    return r * sqrtf(r);
  }
  return powf(s, -beta);
}

template <typename T>
__global__ void lrn_fwd_kernel(int n_dim, int c_dim, int hw, long long x_ns, const T* __restrict__ x,
                               long long y_ns, T* __restrict__ y, float* __restrict__ scale, int size,
                               float alpha_over_size, float beta, float k) {
  const long long pix = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (pix >= static_cast<long long>(n_dim) * hw) return;
  const int n = static_cast<int>(pix / hw), i = static_cast<int>(pix - static_cast<long long>(n) * hw);
  const T* xp = x + n * x_ns + i;
  T* yp = y + n * y_ns + i;
  float* sp = scale ? scale + static_cast<long long>(n) * c_dim * hw + i : nullptr;
  const int half = (size - 1) / 2;
  const int c0 = blockIdx.y * kChunk, c1 = min(c0 + kChunk, c_dim);
  // Before channel c0 the window holds [c0 - half - 1, c0 + half): the first step of the
  // loop adds c0 + half and removes c0 - half - 1.
  float sum = 0.f;  // sum of x^2 over [c - half, c + half] clipped
  for (int cc = max(0, c0 - half - 1); cc < min(c_dim, c0 + half); ++cc) {
    const float v = to_f32(xp[static_cast<long long>(cc) * hw]);
    sum += v * v;
  }
  for (int c = c0; c < c1; ++c) {
    const int enter = c + half, leave = c - half - 1;
    if (enter < c_dim) {
      const float v = to_f32(xp[static_cast<long long>(enter) * hw]);
      sum += v * v;
    }
    if (leave >= 0) {
      const float v = to_f32(xp[static_cast<long long>(leave) * hw]);
      sum -= v * v;
    }
    const float s = k + alpha_over_size * sum;
    const float xv = to_f32(xp[static_cast<long long>(c) * hw]);
    yp[static_cast<long long>(c) * hw] = from_f32<T>(xv * pow_neg_beta(s, beta));
    if (sp) sp[static_cast<long long>(c) * hw] = s;
  }
}

// scale at channel c of one pixel, stored or recomputed from x.
template <typename T>
__device__ inline float scale_at(const T* xp, const float* sp, int c, int c_dim, int hw, int half,
                                 float alpha_over_size, float k) {
  if (sp) return sp[static_cast<long long>(c) * hw];
  float sum = 0.f;
  for (int cc = max(0, c - half); cc <= min(c_dim - 1, c + half); ++cc) {
    const float v = to_f32(xp[static_cast<long long>(cc) * hw]);
    sum += v * v;
  }
  return k + alpha_over_size * sum;
}

template <typename T>
__global__ void lrn_bwd_kernel(int n_dim, int c_dim, int hw, long long x_ns, const T* __restrict__ x,
                               long long y_ns, const T* __restrict__ y, const T* __restrict__ dy,
                               const float* __restrict__ scale, int size, float alpha_over_size, float beta,
                               float k, T* dx, bool accumulate) {
  const long long pix = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (pix >= static_cast<long long>(n_dim) * hw) return;
  const int n = static_cast<int>(pix / hw), i = static_cast<int>(pix - static_cast<long long>(n) * hw);
  const T* xp = x + n * x_ns + i;
  const T* yp = y + n * y_ns + i;
  const T* dyp = dy + n * y_ns + i;
  T* dxp = dx + n * x_ns + i;
  const float* sp = scale ? scale + static_cast<long long>(n) * c_dim * hw + i : nullptr;
  const int half = (size - 1) / 2;
  const float cache_ratio = 2.f * alpha_over_size * beta;
  auto ratio = [&](int c) {
    const long long o = static_cast<long long>(c) * hw;
    return to_f32(dyp[o]) * to_f32(yp[o]) / scale_at(xp, sp, c, c_dim, hw, half, alpha_over_size, k);
  };
  const int c0 = blockIdx.y * kChunk, c1 = min(c0 + kChunk, c_dim);
  float acc = 0.f;  // sum of dy*y/scale over [c - half, c + half] clipped
  for (int cc = max(0, c0 - half - 1); cc < min(c_dim, c0 + half); ++cc) acc += ratio(cc);
  for (int c = c0; c < c1; ++c) {
    const int enter = c + half, leave = c - half - 1;
    if (enter < c_dim) acc += ratio(enter);
    if (leave >= 0) acc -= ratio(leave);
    const long long o = static_cast<long long>(c) * hw;
    const float s = scale_at(xp, sp, c, c_dim, hw, half, alpha_over_size, k);
    float v = to_f32(dyp[o]) * pow_neg_beta(s, beta) - cache_ratio * to_f32(xp[o]) * acc;
    if (accumulate) v += to_f32(dxp[o]);
    dxp[o] = from_f32<T>(v);
  }
}

dim3 lrn_grid(const Nchw& xs) {
  const long long pixels = static_cast<long long>(xs.n) * xs.h * xs.w;
  return dim3(static_cast<unsigned>((pixels + kThreads - 1) / kThreads), (xs.c + kChunk - 1) / kChunk);
}

}  // namespace

template <typename T>
void lrn_fwd(const Nchw& xs, const T* x, const LrnGeom& g, const Nchw& ys, T* y, float* scale,
             cudaStream_t stream) {
  if (xs.count() == 0) return;
  lrn_fwd_kernel<T><<<lrn_grid(xs), kThreads, 0, stream>>>(xs.n, xs.c, xs.h * xs.w, xs.nstride(), x,
                                                           ys.nstride(), y, scale, g.local_size,
                                                           g.alpha / g.local_size, g.beta, g.k);
  KERNEL_CHECK("lrn_fwd_kernel");
}

template <typename T>
void lrn_bwd(const Nchw& xs, const T* x, const Nchw& ys, const T* y, const T* dy, const float* scale,
             const LrnGeom& g, T* dx, bool accumulate, cudaStream_t stream) {
  if (xs.count() == 0) return;
  lrn_bwd_kernel<T><<<lrn_grid(xs), kThreads, 0, stream>>>(
      xs.n, xs.c, xs.h * xs.w, xs.nstride(), x, ys.nstride(), y, dy, scale, g.local_size,
      g.alpha / g.local_size, g.beta, g.k, dx, accumulate);
  KERNEL_CHECK("lrn_bwd_kernel");
}

template void lrn_fwd<float>(const Nchw&, const float*, const LrnGeom&, const Nchw&, float*, float*,
                             cudaStream_t);
template void lrn_fwd<__nv_bfloat16>(const Nchw&, const __nv_bfloat16*, const LrnGeom&, const Nchw&,
                                     __nv_bfloat16*, float*, cudaStream_t);
template void lrn_bwd<float>(const Nchw&, const float*, const Nchw&, const float*, const float*, const float*,
                             const LrnGeom&, float*, bool, cudaStream_t);
template void lrn_bwd<__nv_bfloat16>(const Nchw&, const __nv_bfloat16*, const Nchw&, const __nv_bfloat16*,
                                     const __nv_bfloat16*, const float*, const LrnGeom&, __nv_bfloat16*, bool,
                                     cudaStream_t);

}  // namespace incept::kernels

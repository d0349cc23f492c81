// Cross-channel LRN kernels (lrn_gpu.h). One thread per (n, h, w) pixel and chunk of
// channels: it walks its channels with a sliding window sum, so each x is loaded about
// twice (entering the window, and for its own output), with loads coalesced along w.
// The channel chunks (blockIdx.y) give enough threads at batch 8 too.
#include "engine/check.h"
#include "kernels/lrn_gpu.h"
#include "kernels/nhwc_view.h"

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

// ---- channels-last ------------------------------------------------------------------------
// One thread per (pixel, group of V channels). The pixel's channels are contiguous, so the
// window of channel c is a few neighbouring elements: the thread loads its V channels as one
// access and the kHalf channels on each side singly (they are in the same cache lines as its
// neighbours' groups), and runs the window sums in registers.
struct LrnNhwcArgs {
  int pixels, hw, c_dim, groups;
  NhwcArgs x, y;
  float alpha_over_size, beta, k;
};

template <typename T, int V>
__device__ inline void load_group(const T* p, float* out) {
  const Pack<T, V> v = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int e = 0; e < V; ++e) out[e] = to_f32(v.v[e]);
}

// out[t] = p[c0 + t] for t in [0, n) with zeros outside [0, c_dim); the middle V at c0 + off
// come from one vector load. When the halo on each side fits in one group (off <= V and
// n - off - V <= V) the halos come from the neighbouring groups' vector loads (whole groups:
// the vector path has C % V == 0, so a neighbouring group is wholly inside [0, C) or wholly
// outside), not from one scalar load per channel: the same values with far fewer load
// instructions (the neighbours' groups are in L1, read by the neighbouring threads).
template <typename T, int V, int kOff, int kN>
__device__ inline void load_window(const T* p, int c0, int c_dim, float* out) {
  constexpr int kAfter = kN - kOff - V;
  const int c = c0 + kOff;  // this thread's first channel
  load_group<T, V>(p + c, out + kOff);
  if constexpr (V > 1 && kOff <= V && kAfter <= V) {
    if constexpr (kOff > 0) {
      float prev[V];
      if (c >= V) {
        load_group<T, V>(p + c - V, prev);
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) prev[e] = 0.f;
      }
#pragma unroll
      for (int t = 0; t < kOff; ++t) out[t] = prev[V - kOff + t];
    }
    if constexpr (kAfter > 0) {
      float next[V];
      if (c + V < c_dim) {
        load_group<T, V>(p + c + V, next);
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) next[e] = 0.f;
      }
#pragma unroll
      for (int t = 0; t < kAfter; ++t) out[kOff + V + t] = next[t];
    }
  } else {
#pragma unroll
    for (int t = 0; t < kN; ++t) {
      if (t >= kOff && t < kOff + V) continue;
      const int cc = c0 + t;
      out[t] = (cc >= 0 && cc < c_dim) ? to_f32(p[cc]) : 0.f;
    }
  }
}

template <typename T, int V, int kHalf>
__global__ void lrn_fwd_nhwc_kernel(LrnNhwcArgs a, const T* __restrict__ x, T* __restrict__ y,
                                    float* __restrict__ scale) {
  constexpr int kW = V + 2 * kHalf;
  const unsigned total = static_cast<unsigned>(a.pixels) * a.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const unsigned pix = j / a.groups;
    const int c = static_cast<int>(j - pix * a.groups) * V;
    const int n = static_cast<int>(pix / a.hw), i = static_cast<int>(pix - static_cast<unsigned>(n) * a.hw);
    float xv[kW];
    load_window<T, V, kHalf, kW>(x + n * a.x.ns + static_cast<long long>(i) * a.x.pix, c - kHalf, a.c_dim,
                                 xv);
    Pack<T, V> out;
    float sc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
      float sum = 0.f;
#pragma unroll
      for (int d = 0; d <= 2 * kHalf; ++d) sum += xv[e + d] * xv[e + d];
      sc[e] = a.k + a.alpha_over_size * sum;
      out.v[e] = from_f32<T>(xv[kHalf + e] * pow_neg_beta(sc[e], a.beta));
    }
    *reinterpret_cast<Pack<T, V>*>(y + n * a.y.ns + static_cast<long long>(i) * a.y.pix + c) = out;
    if (scale) {
      float* sp = scale + static_cast<long long>(pix) * a.c_dim + c;
#pragma unroll
      for (int e = 0; e < V; ++e) sp[e] = sc[e];
    }
  }
}

template <typename T, int V, int kHalf>
__global__ void lrn_bwd_nhwc_kernel(LrnNhwcArgs a, const T* __restrict__ x, const T* __restrict__ y,
                                    const T* __restrict__ dy, const float* __restrict__ scale, T* dx,
                                    bool accumulate, bool relu_mask) {
  constexpr int kR = V + 2 * kHalf;  // ratios dy * y / scale at channels [c - kHalf, c + V + kHalf)
  constexpr int kX = V + 4 * kHalf;  // x at [c - 2 kHalf, c + V + 2 kHalf) when scale is recomputed
  const float cache_ratio = 2.f * a.alpha_over_size * a.beta;
  const unsigned total = static_cast<unsigned>(a.pixels) * a.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const unsigned pix = j / a.groups;
    const int c = static_cast<int>(j - pix * a.groups) * V;
    const int n = static_cast<int>(pix / a.hw), i = static_cast<int>(pix - static_cast<unsigned>(n) * a.hw);
    const T* xp = x + n * a.x.ns + static_cast<long long>(i) * a.x.pix;
    const long long yo = n * a.y.ns + static_cast<long long>(i) * a.y.pix;
    float yv[kR], dv[kR], sv[kR], xc[V];
    load_window<T, V, kHalf, kR>(y + yo, c - kHalf, a.c_dim, yv);
    load_window<T, V, kHalf, kR>(dy + yo, c - kHalf, a.c_dim, dv);
    if (scale) {
      const float* sp = scale + static_cast<long long>(pix) * a.c_dim;
#pragma unroll
      for (int t = 0; t < kR; ++t) {
        const int cc = c - kHalf + t;
        sv[t] = (cc >= 0 && cc < a.c_dim) ? sp[cc] : 1.f;
      }
      load_group<T, V>(xp + c, xc);
    } else {
      float xv[kX];
      load_window<T, V, 2 * kHalf, kX>(xp, c - 2 * kHalf, a.c_dim, xv);
#pragma unroll
      for (int t = 0; t < kR; ++t) {
        float sum = 0.f;
#pragma unroll
        for (int d = 0; d <= 2 * kHalf; ++d) sum += xv[t + d] * xv[t + d];
        sv[t] = a.k + a.alpha_over_size * sum;
      }
#pragma unroll
      for (int e = 0; e < V; ++e) xc[e] = xv[2 * kHalf + e];
    }
    float r[kR];
#pragma unroll
    for (int t = 0; t < kR; ++t) r[t] = __fdividef(dv[t] * yv[t], sv[t]);  // zero outside [0, C): dv = yv = 0
    T* dp = dx + n * a.x.ns + static_cast<long long>(i) * a.x.pix + c;
    Pack<T, V> out;
    if (accumulate) out = *reinterpret_cast<const Pack<T, V>*>(dp);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      float acc = 0.f;
#pragma unroll
      for (int d = 0; d <= 2 * kHalf; ++d) acc += r[e + d];
      float v = dv[kHalf + e] * pow_neg_beta(sv[kHalf + e], a.beta) - cache_ratio * xc[e] * acc;
      if (accumulate) v += to_f32(out.v[e]);
      if (relu_mask && !(xc[e] > 0.f)) v = 0.f;
      out.v[e] = from_f32<T>(v);
    }
    *reinterpret_cast<Pack<T, V>*>(dp) = out;
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

namespace {

LrnNhwcArgs lrn_nhwc_args(const Nchw& xs, const Nchw& ys, const LrnGeom& g, int v) {
  return LrnNhwcArgs{xs.n * xs.h * xs.w,     xs.h * xs.w, xs.c, xs.c / v, nhwc_args(xs), nhwc_args(ys),
                     g.alpha / g.local_size, g.beta,      g.k};
}

// Calls fn.template operator()<V, kHalf>() for the view's vector width and the window.
// ptrs_aligned: every pointer the kernel reads or writes in groups is 16-byte aligned.
template <typename T, typename Fn>
void lrn_nhwc_dispatch(const Nchw& xs, const Nchw& ys, bool ptrs_aligned, const LrnGeom& g, Fn&& fn) {
  if (g.local_size % 2 == 0 || g.local_size < 1 || g.local_size > 9)
    throw Error("lrn (channels-last): local_size must be odd and at most 9");
  constexpr int kV = kVec16<T>;
  const bool vec = xs.c % kV == 0 && nhwc_args(xs).pix % kV == 0 && nhwc_args(ys).pix % kV == 0 &&
                   xs.nstride() % kV == 0 && ys.nstride() % kV == 0 && ptrs_aligned;
  auto by_half = [&]<int V>() {
    switch (g.local_size / 2) {
      case 0:
        fn.template operator()<V, 0>();
        break;
      case 1:
        fn.template operator()<V, 1>();
        break;
      case 2:
        fn.template operator()<V, 2>();
        break;
      case 3:
        fn.template operator()<V, 3>();
        break;
      default:
        fn.template operator()<V, 4>();
        break;
    }
  };
  if (vec)
    by_half.template operator()<kV>();
  else
    by_half.template operator()<1>();
}

}  // namespace

template <typename T>
void lrn_fwd_nhwc(const Nchw& xs, const T* x, const LrnGeom& g, const Nchw& ys, T* y, float* scale,
                  cudaStream_t stream) {
  check_nhwc_view(xs, "lrn_fwd_nhwc");
  check_nhwc_view(ys, "lrn_fwd_nhwc");
  if (xs.count() == 0) return;
  lrn_nhwc_dispatch<T>(xs, ys, aligned16(x) && aligned16(y), g, [&]<int V, int H>() {
    const LrnNhwcArgs a = lrn_nhwc_args(xs, ys, g, V);
    lrn_fwd_nhwc_kernel<T, V, H>
        <<<grid_for(std::size_t(a.pixels) * a.groups, kThreads), kThreads, 0, stream>>>(a, x, y, scale);
    KERNEL_CHECK("lrn_fwd_nhwc_kernel");
  });
}

template <typename T>
void lrn_bwd_nhwc(const Nchw& xs, const T* x, const Nchw& ys, const T* y, const T* dy, const float* scale,
                  const LrnGeom& g, T* dx, bool accumulate, cudaStream_t stream, bool relu_mask) {
  check_nhwc_view(xs, "lrn_bwd_nhwc");
  check_nhwc_view(ys, "lrn_bwd_nhwc");
  if (relu_mask && accumulate) throw Error("lrn_bwd_nhwc: relu_mask needs an overwritten dx");
  if (xs.count() == 0) return;
  const bool ptrs_aligned = aligned16(x) && aligned16(y) && aligned16(dy) && aligned16(dx);
  lrn_nhwc_dispatch<T>(xs, ys, ptrs_aligned, g, [&]<int V, int H>() {
    const LrnNhwcArgs a = lrn_nhwc_args(xs, ys, g, V);
    lrn_bwd_nhwc_kernel<T, V, H>
        <<<grid_for(std::size_t(a.pixels) * a.groups, kThreads), kThreads, 0, stream>>>(
            a, x, y, dy, scale, dx, accumulate, relu_mask);
    KERNEL_CHECK("lrn_bwd_nhwc_kernel");
  });
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

#define INCEPT_INSTANTIATE(T)                                                                         \
  template void lrn_fwd_nhwc<T>(const Nchw&, const T*, const LrnGeom&, const Nchw&, T*, float*,       \
                                cudaStream_t);                                                        \
  template void lrn_bwd_nhwc<T>(const Nchw&, const T*, const Nchw&, const T*, const T*, const float*, \
                                const LrnGeom&, T*, bool, cudaStream_t, bool);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

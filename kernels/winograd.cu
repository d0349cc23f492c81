// F(2x2, 3x3) Winograd transform kernels (winograd_gpu.h; formulas: winograd_tile.h). Each
// thread transforms one tile of VW channels (4 with float4 loads and stores where the view's
// channels, strides and pointers allow it, else 1): the transformed matrices [16][rows][C]
// keep channels innermost, so a warp's stores to each of the 16 matrices are contiguous.
#include <cstdint>

#include "engine/check.h"
#include "kernels/dtype_gpu.h"
#include "kernels/nhwc_view.h"
#include "kernels/winograd_gpu.h"
#include "kernels/winograd_tile.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

struct TileGeom {
  int n, h, w, th, tw;  // images, rows, columns; tiles per column and per row
  long long tiles;
};
TileGeom tile_geom(const Nchw& s) {
  const int th = (s.h + 1) / 2, tw = (s.w + 1) / 2;
  return {s.n, s.h, s.w, th, tw, static_cast<long long>(s.n) * th * tw};
}

// Tile t's image n, tile row i and tile column j.
struct TileIdx {
  long long n;
  int i, j;
};
__device__ __forceinline__ TileIdx tile_of(const TileGeom& g, long long t) {
  return {t / (static_cast<long long>(g.tw) * g.th), static_cast<int>(t / g.tw % g.th),
          static_cast<int>(t % g.tw)};
}

template <int VW>
struct Vec;
template <>
struct Vec<1> {
  using T = float;
  __device__ static float get(const float& v, int) { return v; }
  __device__ static void set(float& v, int, float x) { v = x; }
};
template <>
struct Vec<4> {
  using T = float4;
  __device__ static float get(const float4& v, int l) {
    return l == 0 ? v.x : l == 1 ? v.y : l == 2 ? v.z : v.w;
  }
  __device__ static void set(float4& v, int l, float x) {
    if (l == 0)
      v.x = x;
    else if (l == 1)
      v.y = x;
    else if (l == 2)
      v.z = x;
    else
      v.w = x;
  }
};
template <int VW>
__device__ typename Vec<VW>::T vzero() {
  typename Vec<VW>::T z;
#pragma unroll
  for (int l = 0; l < VW; ++l) Vec<VW>::set(z, l, 0.f);
  return z;
}

// The 1-D transform f over each of the VW lanes of an I x I tile of vectors: an O x O tile.
template <int VW, int I, int O, class F>
__device__ __forceinline__ void transform_lanes(const typename Vec<VW>::T (&in)[I][I],
                                                typename Vec<VW>::T (&out)[O][O], F f) {
#pragma unroll
  for (int l = 0; l < VW; ++l) {
    float a[I][I], b[O][O];
#pragma unroll
    for (int e = 0; e < I * I; ++e) a[e / I][e % I] = Vec<VW>::get(in[e / I][e % I], l);
    wino::transform_2d<I, O>(a, b, f);
#pragma unroll
    for (int e = 0; e < O * O; ++e) Vec<VW>::set(out[e / O][e % O], l, b[e / O][e % O]);
  }
}

// A tile's 16 transform-domain vectors to its row of each plane of [16][rows][channels].
template <class V>
__device__ __forceinline__ void store_planes(const V (&o)[4][4], float* dst, long long plane) {
#pragma unroll
  for (int e = 0; e < 16; ++e) *reinterpret_cast<V*>(dst + e * plane) = o[e / 4][e % 4];
}

template <int VW>
__global__ void winograd_inputs_kernel(TileGeom g, int c, NhwcArgs xa, const float* __restrict__ x,
                                       long long rows, float* __restrict__ v) {
  using V = typename Vec<VW>::T;
  const int groups = c / VW;
  const long long total = rows * groups, plane = rows * c;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int c0 = static_cast<int>(idx % groups) * VW;
    const long long t = idx / groups;
    V d[4][4];
    if (t < g.tiles) {
      const auto [n, i, j] = tile_of(g, t);
      const float* xn = x + n * xa.ns + c0;
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const int yy = 2 * i - 1 + r, xx = 2 * j - 1 + s;
          d[r][s] = (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w)
                        ? *reinterpret_cast<const V*>(xn + (static_cast<long long>(yy) * g.w + xx) * xa.pix)
                        : vzero<VW>();
        }
    } else {
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int s = 0; s < 4; ++s) d[r][s] = vzero<VW>();
    }
    V o[4][4];
    transform_lanes<VW, 4, 4>(d, o, wino::InputT{});
    store_planes(o, v + t * c + c0, plane);
  }
}

template <int VW>
__global__ void winograd_outputs_kernel(TileGeom g, int k, NhwcArgs ya, const float* __restrict__ m,
                                        long long rows, const float* __restrict__ bias, bool relu,
                                        float* __restrict__ y, bool accumulate) {
  using V = typename Vec<VW>::T;
  const int groups = k / VW;
  const long long total = g.tiles * groups, plane = rows * k;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int k0 = static_cast<int>(idx % groups) * VW;
    const long long t = idx / groups;
    V in[4][4];
    const float* src = m + t * k + k0;
#pragma unroll
    for (int e = 0; e < 16; ++e) in[e / 4][e % 4] = *reinterpret_cast<const V*>(src + e * plane);
    V o[2][2];
    transform_lanes<VW, 4, 2>(in, o, wino::OutputT{});
#pragma unroll
    for (int l = 0; l < VW; ++l) {
      const float bv = bias ? bias[k0 + l] : 0.f;
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int s = 0; s < 2; ++s) {
          float val = Vec<VW>::get(o[r][s], l);
          if (bias) val += bv;
          if (relu) val = val > 0.f ? val : 0.f;
          Vec<VW>::set(o[r][s], l, val);
        }
    }
    const auto [n, i, j] = tile_of(g, t);
    float* yn = y + n * ya.ns + k0;
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const int yy = 2 * i + r, xx = 2 * j + s;
        if (yy >= g.h || xx >= g.w) continue;
        V* dst = reinterpret_cast<V*>(yn + (static_cast<long long>(yy) * g.w + xx) * ya.pix);
        if (accumulate) {
          V cur = *dst;
#pragma unroll
          for (int l = 0; l < VW; ++l) Vec<VW>::set(cur, l, Vec<VW>::get(cur, l) + Vec<VW>::get(o[r][s], l));
          *dst = cur;
        } else {
          *dst = o[r][s];
        }
      }
  }
}

template <int VW>
__global__ void winograd_output_grads_kernel(TileGeom g, int k, NhwcArgs ya, const float* __restrict__ dy,
                                             long long rows, float* __restrict__ z) {
  using V = typename Vec<VW>::T;
  const int groups = k / VW;
  const long long total = rows * groups, plane = rows * k;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int k0 = static_cast<int>(idx % groups) * VW;
    const long long t = idx / groups;
    V q[2][2];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int s = 0; s < 2; ++s) q[r][s] = vzero<VW>();
    if (t < g.tiles) {
      const auto [n, i, j] = tile_of(g, t);
      const float* dn = dy + n * ya.ns + k0;
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int s = 0; s < 2; ++s) {
          const int yy = 2 * i + r, xx = 2 * j + s;
          if (yy < g.h && xx < g.w)
            q[r][s] = *reinterpret_cast<const V*>(dn + (static_cast<long long>(yy) * g.w + xx) * ya.pix);
        }
    }
    V o[4][4];
    transform_lanes<VW, 2, 4>(q, o, wino::OutputGradT{});
    store_planes(o, z + t * k + k0, plane);
  }
}

// One thread per (filter o, channel i); u's matrices are [k][c] (rows = k), or [c][k] for the
// data gradient's filters.
__global__ void winograd_filters_kernel(int k, int c, const float* __restrict__ w, bool data_grad,
                                        float* __restrict__ u) {
  const long long total = static_cast<long long>(k) * c, mat = total;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % c), o = static_cast<int>(idx / c);
    float g[3][3], t[4][4];
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
      for (int s = 0; s < 3; ++s)
        g[r][s] = data_grad ? w[((static_cast<long long>(o) * 3 + 2 - r) * 3 + 2 - s) * c + i]
                            : w[((static_cast<long long>(o) * 3 + r) * 3 + s) * c + i];
    wino::transform_2d<3, 4>(g, t, wino::FilterT{});
    const long long at = data_grad ? static_cast<long long>(i) * k + o : idx;
#pragma unroll
    for (int e = 0; e < 16; ++e) u[e * mat + at] = t[e / 4][e % 4];
  }
}

__global__ void winograd_filter_grads_kernel(int k, int c, int parts, const float* __restrict__ s,
                                             float* __restrict__ dw) {
  const long long total = static_cast<long long>(k) * c, mat = total;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % c), o = static_cast<int>(idx / c);
    float a[4][4], g[3][3];
#pragma unroll
    for (int e = 0; e < 16; ++e) {
      float sum = 0.f;
      for (int p = 0; p < parts; ++p) sum += s[(static_cast<long long>(e) * parts + p) * mat + idx];
      a[e / 4][e % 4] = sum;
    }
    wino::transform_2d<4, 3>(a, g, wino::FilterGradT{});
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
      for (int q = 0; q < 3; ++q) dw[((static_cast<long long>(o) * 3 + r) * 3 + q) * c + i] += g[r][q];
  }
}

// float4 access: channels, pixel and batch strides multiples of 4 and the pointers 16-byte aligned
bool vec4(int c, const NhwcArgs& a, const void* p, const void* q) {
  return c % 4 == 0 && a.pix % 4 == 0 && a.ns % 4 == 0 && aligned16(p) && aligned16(q);
}

void check_rows(const Nchw& s, long long rows, const char* what) {
  check_nhwc_view(s, what);
  if (rows < tile_geom(s).tiles) throw Error(std::string(what) + ": fewer rows than tiles");
}

}  // namespace

void winograd_filters(int k, int c, const float* w, bool data_grad, float* u, cudaStream_t stream) {
  const std::size_t total = std::size_t(k) * c;
  if (total == 0) return;
  winograd_filters_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(k, c, w, data_grad, u);
  KERNEL_CHECK("winograd_filters_kernel");
}

void winograd_inputs(const Nchw& xs, const float* x, std::int64_t rows, float* v, cudaStream_t stream) {
  check_rows(xs, rows, "winograd_inputs");
  const TileGeom g = tile_geom(xs);
  const NhwcArgs a = nhwc_args(xs);
  if (rows * xs.c == 0) return;
  if (vec4(xs.c, a, x, v))
    winograd_inputs_kernel<4>
        <<<grid_for(std::size_t(rows) * xs.c / 4, kThreads), kThreads, 0, stream>>>(g, xs.c, a, x, rows, v);
  else
    winograd_inputs_kernel<1>
        <<<grid_for(std::size_t(rows) * xs.c, kThreads), kThreads, 0, stream>>>(g, xs.c, a, x, rows, v);
  KERNEL_CHECK("winograd_inputs_kernel");
}

void winograd_outputs(const float* m, std::int64_t rows, const float* bias, bool relu, const Nchw& ys,
                      float* y, bool accumulate, cudaStream_t stream) {
  check_rows(ys, rows, "winograd_outputs");
  const TileGeom g = tile_geom(ys);
  const NhwcArgs a = nhwc_args(ys);
  if (g.tiles * ys.c == 0) return;
  if (vec4(ys.c, a, y, m))
    winograd_outputs_kernel<4><<<grid_for(std::size_t(g.tiles) * ys.c / 4, kThreads), kThreads, 0, stream>>>(
        g, ys.c, a, m, rows, bias, relu, y, accumulate);
  else
    winograd_outputs_kernel<1><<<grid_for(std::size_t(g.tiles) * ys.c, kThreads), kThreads, 0, stream>>>(
        g, ys.c, a, m, rows, bias, relu, y, accumulate);
  KERNEL_CHECK("winograd_outputs_kernel");
}

void winograd_output_grads(const Nchw& ys, const float* dy, std::int64_t rows, float* z,
                           cudaStream_t stream) {
  check_rows(ys, rows, "winograd_output_grads");
  const TileGeom g = tile_geom(ys);
  const NhwcArgs a = nhwc_args(ys);
  if (rows * ys.c == 0) return;
  if (vec4(ys.c, a, dy, z))
    winograd_output_grads_kernel<4>
        <<<grid_for(std::size_t(rows) * ys.c / 4, kThreads), kThreads, 0, stream>>>(g, ys.c, a, dy, rows, z);
  else
    winograd_output_grads_kernel<1>
        <<<grid_for(std::size_t(rows) * ys.c, kThreads), kThreads, 0, stream>>>(g, ys.c, a, dy, rows, z);
  KERNEL_CHECK("winograd_output_grads_kernel");
}

void winograd_filter_grads(int k, int c, int parts, const float* s, float* dw, cudaStream_t stream) {
  const std::size_t total = std::size_t(k) * c;
  if (total == 0) return;
  winograd_filter_grads_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(k, c, parts, s, dw);
  KERNEL_CHECK("winograd_filter_grads_kernel");
}

}  // namespace incept::kernels

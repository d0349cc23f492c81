// MAX / AVE pooling kernels (pool_gpu.h). Forward: one thread per output element.
// Backward: one thread per run of 4 input columns gathering from the output windows that
// cover them (Caffe's MaxPoolBackward/AvePoolBackward gather), so no atomics and no zero-fill pass.
#include <cfloat>
#include <type_traits>

#include "engine/check.h"
#include "kernels/nhwc_view.h"
#include "kernels/pool_gpu.h"

namespace incept::kernels {

namespace {

constexpr int kThreads = 256;

struct PoolArgs {
  int n, c, h, w;        // input logical shape
  int ho, wo;            // output shape
  long long x_ns, y_ns;  // batch strides of the x/dx and y/dy views
  int kh, kw, sh, sw, ph, pw;
};

// I: the flat index type. 32-bit when the tensor has < 2^31 elements (every GoogLeNet
// shape at batch 128): 64-bit division and modulo cost ~4x the rest of a pooling window.
template <typename T, bool kMax, typename I>
__global__ void pool_fwd_kernel(PoolArgs a, const T* __restrict__ x, T* __restrict__ y,
                                std::int32_t* __restrict__ mask) {
  const I total = static_cast<I>(a.n) * a.c * a.ho * a.wo;
  for (I j = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<I>(gridDim.x) * blockDim.x) {
    const I q = j / a.wo;
    const int ox = static_cast<int>(j - q * a.wo);
    const I nc = q / a.ho;
    const int oy = static_cast<int>(q - nc * a.ho);
    const int n = static_cast<int>(nc / a.c), c = static_cast<int>(nc - static_cast<I>(n) * a.c);
    int h0 = oy * a.sh - a.ph, w0 = ox * a.sw - a.pw;
    int h1 = min(h0 + a.kh, a.h + a.ph), w1 = min(w0 + a.kw, a.w + a.pw);
    const int pool_size = (h1 - h0) * (w1 - w0);
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    h1 = min(h1, a.h);
    w1 = min(w1, a.w);
    const T* xp = x + n * a.x_ns + static_cast<long long>(c) * a.h * a.w;
    T* yp = y + n * a.y_ns + static_cast<long long>(c) * a.ho * a.wo + oy * a.wo + ox;
    if (kMax) {
      float best = -FLT_MAX;
      int idx = -1;
      for (int iy = h0; iy < h1; ++iy)
        for (int ix = w0; ix < w1; ++ix) {
          const float v = to_f32(xp[iy * a.w + ix]);
          if (v > best) {
            best = v;
            idx = iy * a.w + ix;
          }
        }
      *yp = from_f32<T>(best);
      if (mask) mask[j] = idx;
    } else {
      float sum = 0.f;
      for (int iy = h0; iy < h1; ++iy)
        for (int ix = w0; ix < w1; ++ix) sum += to_f32(xp[iy * a.w + ix]);
      *yp = from_f32<T>(sum / static_cast<float>(pool_size));
    }
  }
}

// Backward: one thread per run of kVec consecutive input columns of one row, gathering from
// the (at most a few) output windows that cover any of them: the index math and the mask and
// dy loads of neighbouring windows are shared by kVec outputs instead of repeated per element.
constexpr int kVec = 4;

template <typename T, bool kMax, typename I>
__global__ void pool_bwd_kernel(PoolArgs a, const T* __restrict__ dy, const std::int32_t* __restrict__ mask,
                                T* dx, bool accumulate) {
  const int wg = (a.w + kVec - 1) / kVec;
  const I total = static_cast<I>(a.n) * a.c * a.h * wg;
  for (I j = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<I>(gridDim.x) * blockDim.x) {
    const I q = j / wg;
    const int ix0 = static_cast<int>(j - q * wg) * kVec;
    const I nc = q / a.h;
    const int iy = static_cast<int>(q - nc * a.h);
    const int n = static_cast<int>(nc / a.c), c = static_cast<int>(nc - static_cast<I>(n) * a.c);
    const int ixl = min(ix0 + kVec, a.w) - 1;  // last column of this run
    // Output windows [o*s - p, o*s - p + k) that contain row iy / any column of [ix0, ixl].
    const int oy0 = (iy + a.ph < a.kh) ? 0 : (iy + a.ph - a.kh) / a.sh + 1;
    const int oy1 = min((iy + a.ph) / a.sh + 1, a.ho);
    const int ox0 = (ix0 + a.pw < a.kw) ? 0 : (ix0 + a.pw - a.kw) / a.sw + 1;
    const int ox1 = min((ixl + a.pw) / a.sw + 1, a.wo);
    const long long plane_out = static_cast<long long>(a.ho) * a.wo;
    const T* dyp = dy + n * a.y_ns + c * plane_out;
    float g[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) g[v] = 0.f;
    if (kMax) {
      const std::int32_t* mp = mask + nc * plane_out;
      const int me = iy * a.w + ix0;
      for (int oy = oy0; oy < oy1; ++oy)
        for (int ox = ox0; ox < ox1; ++ox) {
          // d in [0, kVec) names the column of this run that won the window (a d that wraps
          // into the next row lands past ixl and is never stored).
          const int d = mp[oy * a.wo + ox] - me;
          if (static_cast<unsigned>(d) < static_cast<unsigned>(kVec)) {
            const float val = to_f32(dyp[oy * a.wo + ox]);
#pragma unroll
            for (int v = 0; v < kVec; ++v)
              if (d == v) g[v] += val;
          }
        }
    } else {
      for (int oy = oy0; oy < oy1; ++oy) {
        const int h0 = oy * a.sh - a.ph, h1 = min(h0 + a.kh, a.h + a.ph);
        for (int ox = ox0; ox < ox1; ++ox) {
          const int w0 = ox * a.sw - a.pw, w1 = min(w0 + a.kw, a.w + a.pw);
          const float val = to_f32(dyp[oy * a.wo + ox]) / static_cast<float>((h1 - h0) * (w1 - w0));
          const int we = w0 + a.kw;
#pragma unroll
          for (int v = 0; v < kVec; ++v)
            if (ix0 + v >= w0 && ix0 + v < we) g[v] += val;
        }
      }
    }
    T* d = dx + n * a.x_ns + static_cast<long long>(c) * a.h * a.w + iy * a.w + ix0;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      if (ix0 + v > ixl) break;
      float r = g[v];
      if (accumulate) r += to_f32(d[v]);
      d[v] = from_f32<T>(r);
    }
  }
}

// ---- channels-last ------------------------------------------------------------------------
// One thread per (n, oy, ox, group of V channels) forward, per (n, iy, ix, group) backward:
// neighbouring threads read neighbouring 16-byte chunks of one pixel's channels.
struct PoolNhwcArgs {
  PoolArgs a;
  NhwcArgs x, y;
  int groups;  // C / V
};

// The (pixel, channel group) of flat index j of a channels-last pass over an H x W grid with
// `groups` groups of v channels per pixel.
struct Site {
  unsigned q;  // the pixel's flat index n * H * W + y * W + x
  int n, y, x, c;
};

__device__ __forceinline__ Site site(unsigned j, int groups, int v, int h, int w) {
  Site s;
  s.q = j / groups;
  s.c = static_cast<int>(j - s.q * groups) * v;
  const unsigned r = s.q / w;
  s.x = static_cast<int>(s.q - r * w);
  s.n = static_cast<int>(r / h);
  s.y = static_cast<int>(r - static_cast<unsigned>(s.n) * h);
  return s;
}

template <typename T, int V, bool kMax>
__global__ void pool_fwd_nhwc_kernel(PoolNhwcArgs b, const T* __restrict__ x, T* __restrict__ y,
                                     std::uint8_t* __restrict__ mask, bool relu_mask) {
  const PoolArgs& a = b.a;
  const unsigned total = static_cast<unsigned>(a.n) * a.ho * a.wo * b.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const Site st = site(j, b.groups, V, a.ho, a.wo);
    const unsigned q = st.q;
    const int n = st.n, oy = st.y, ox = st.x, c = st.c;
    int h0 = oy * a.sh - a.ph, w0 = ox * a.sw - a.pw;
    const int hs = h0, ws = w0;  // window origin (for the mask's in-window positions)
    int h1 = min(h0 + a.kh, a.h + a.ph), w1 = min(w0 + a.kw, a.w + a.pw);
    const int pool_size = (h1 - h0) * (w1 - w0);
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    h1 = min(h1, a.h);
    w1 = min(w1, a.w);
    const T* xp = x + n * b.x.ns + c;
    float acc[V];
    int idx[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
      acc[e] = kMax ? -FLT_MAX : 0.f;
      idx[e] = -1;
    }
    for (int iy = h0; iy < h1; ++iy)
      for (int ix = w0; ix < w1; ++ix) {
        const int at = iy * a.w + ix, rel = (iy - hs) * a.kw + (ix - ws);
        const Pack<T, V> v = *reinterpret_cast<const Pack<T, V>*>(xp + static_cast<long long>(at) * b.x.pix);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float f = to_f32(v.v[e]);
          if (kMax) {
            if (f > acc[e]) {
              acc[e] = f;
              idx[e] = rel;
            }
          } else {
            acc[e] += f;
          }
        }
      }
    Pack<T, V> out;
#pragma unroll
    for (int e = 0; e < V; ++e)
      out.v[e] = from_f32<T>(kMax ? acc[e] : acc[e] / static_cast<float>(pool_size));
    *reinterpret_cast<Pack<T, V>*>(y + n * b.y.ns + static_cast<long long>(oy * a.wo + ox) * b.y.pix + c) =
        out;
    if (kMax && mask) {
      Pack<std::uint8_t, V> m;
#pragma unroll
      for (int e = 0; e < V; ++e)
        m.v[e] = static_cast<std::uint8_t>(idx[e] < 0 || (relu_mask && !(acc[e] > 0.f)) ? 255 : idx[e]);
      *reinterpret_cast<Pack<std::uint8_t, V>*>(mask + static_cast<long long>(q) * a.c + c) = m;
    }
  }
}

// The input pixel (and channel group) of flat index j of a channels-last backward pass, and
// the output windows [oy0, oy1) x [ox0, ox1) that cover it.
struct BwdSite {
  int n, iy, ix, c, oy0, oy1, ox0, ox1;
};

__device__ __forceinline__ BwdSite bwd_site(const PoolArgs& a, int groups, int v, unsigned j) {
  const Site p = site(j, groups, v, a.h, a.w);
  BwdSite s{p.n, p.y, p.x, p.c, 0, 0, 0, 0};
  s.oy0 = (s.iy + a.ph < a.kh) ? 0 : (s.iy + a.ph - a.kh) / a.sh + 1;
  s.oy1 = min((s.iy + a.ph) / a.sh + 1, a.ho);
  s.ox0 = (s.ix + a.pw < a.kw) ? 0 : (s.ix + a.pw - a.kw) / a.sw + 1;
  s.ox1 = min((s.ix + a.pw) / a.sw + 1, a.wo);
  return s;
}

template <typename T, int V, bool kMax>
__global__ void pool_bwd_nhwc_kernel(PoolNhwcArgs b, const T* __restrict__ dy,
                                     const std::uint8_t* __restrict__ mask, T* dx, bool accumulate) {
  const PoolArgs& a = b.a;
  const unsigned total = static_cast<unsigned>(a.n) * a.h * a.w * b.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const BwdSite st = bwd_site(a, b.groups, V, j);
    const int n = st.n, iy = st.iy, ix = st.ix, c = st.c, oy0 = st.oy0, oy1 = st.oy1, ox0 = st.ox0,
              ox1 = st.ox1;
    const T* dyp = dy + n * b.y.ns + c;
    float g[V];
#pragma unroll
    for (int e = 0; e < V; ++e) g[e] = 0.f;
    const int me = iy * a.w + ix;
    for (int oy = oy0; oy < oy1; ++oy)
      for (int ox = ox0; ox < ox1; ++ox) {
        const int o = oy * a.wo + ox;
        const Pack<T, V> d = *reinterpret_cast<const Pack<T, V>*>(dyp + static_cast<long long>(o) * b.y.pix);
        if (kMax) {
          const Pack<std::uint8_t, V> m = *reinterpret_cast<const Pack<std::uint8_t, V>*>(
              mask + (static_cast<long long>(n) * a.ho * a.wo + o) * a.c + c);
          const int rel = (iy - (oy * a.sh - a.ph)) * a.kw + (ix - (ox * a.sw - a.pw));
#pragma unroll
          for (int e = 0; e < V; ++e)
            if (m.v[e] == rel) g[e] += to_f32(d.v[e]);
        } else {
          const int h0 = oy * a.sh - a.ph, h1 = min(h0 + a.kh, a.h + a.ph);
          const int w0 = ox * a.sw - a.pw, w1 = min(w0 + a.kw, a.w + a.pw);
          const float inv = 1.f / static_cast<float>((h1 - h0) * (w1 - w0));
#pragma unroll
          for (int e = 0; e < V; ++e) g[e] += to_f32(d.v[e]) * inv;
        }
      }
    T* d = dx + n * b.x.ns + static_cast<long long>(me) * b.x.pix + c;
    Pack<T, V> out;
    if (accumulate) out = *reinterpret_cast<const Pack<T, V>*>(d);
#pragma unroll
    for (int e = 0; e < V; ++e) out.v[e] = from_f32<T>(accumulate ? g[e] + to_f32(out.v[e]) : g[e]);
    *reinterpret_cast<Pack<T, V>*>(d) = out;
  }
}

// bf16 MAX pooling on packed pairs (channels-last, V = 8 or 16 channels per thread as V/2
// 32-bit words). The fp32 kernels above spend ~4 instructions per channel and tap on
// conversion, compare and two selects, and ran issue-bound (~70 % SM throughput, 20-50 % of
// DRAM bandwidth on an H200). Here one tap of two channels is one paired compare to a lane
// mask and two bit selects; max and argmax stay exact: the same strict "v > best" from
// best = -inf with no winner (255), so the first maximum wins, -inf and NaN never win, and a
// window without a winner gives -inf, which is what rounding Caffe's -FLT_MAX to bf16 gives.
__device__ __forceinline__ std::uint32_t bit_select(std::uint32_t mask, std::uint32_t a, std::uint32_t b) {
  return (a & mask) | (b & ~mask);  // a where mask bits are set, else b (one LOP3)
}

template <int V>
__global__ void pool_max_fwd_nhwc_bf16_kernel(PoolNhwcArgs b, const __nv_bfloat16* __restrict__ x,
                                              __nv_bfloat16* __restrict__ y, std::uint8_t* __restrict__ mask,
                                              bool relu_mask) {
  constexpr int kWords = V / 2;
  const PoolArgs& a = b.a;
  const unsigned total = static_cast<unsigned>(a.n) * a.ho * a.wo * b.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const Site st = site(j, b.groups, V, a.ho, a.wo);
    const unsigned q = st.q;
    const int n = st.n, oy = st.y, ox = st.x, c = st.c;
    const int hs = oy * a.sh - a.ph, ws = ox * a.sw - a.pw;  // window origin
    const int h0 = max(hs, 0), w0 = max(ws, 0), h1 = min(hs + a.kh, a.h), w1 = min(ws + a.kw, a.w);
    const __nv_bfloat16* xp = x + n * b.x.ns + c;
    std::uint32_t best[kWords], idx[kWords];
#pragma unroll
    for (int k = 0; k < kWords; ++k) {
      best[k] = 0xFF80FF80u;  // -inf, -inf
      idx[k] = 0x00FF00FFu;   // no winner
    }
    for (int iy = h0; iy < h1; ++iy)
      for (int ix = w0; ix < w1; ++ix) {
        const std::uint32_t rel = static_cast<std::uint32_t>((iy - hs) * a.kw + (ix - ws)) * 0x00010001u;
        const Pack<std::uint32_t, kWords> v = *reinterpret_cast<const Pack<std::uint32_t, kWords>*>(
            xp + static_cast<long long>(iy * a.w + ix) * b.x.pix);
#pragma unroll
        for (int k = 0; k < kWords; ++k) {
          const std::uint32_t gt = __hgt2_mask(*reinterpret_cast<const __nv_bfloat162*>(&v.v[k]),
                                               *reinterpret_cast<const __nv_bfloat162*>(&best[k]));
          best[k] = bit_select(gt, v.v[k], best[k]);
          idx[k] = bit_select(gt, rel, idx[k]);
        }
      }
    Pack<std::uint32_t, kWords> out;
#pragma unroll
    for (int k = 0; k < kWords; ++k) out.v[k] = best[k];
    *reinterpret_cast<Pack<std::uint32_t, kWords>*>(
        y + n * b.y.ns + static_cast<long long>(oy * a.wo + ox) * b.y.pix + c) = out;
    if (mask) {
      if (relu_mask) {  // a window whose maximum is not positive: no winner (0x00FF)
        const __nv_bfloat162 zero = __floats2bfloat162_rn(0.f, 0.f);
#pragma unroll
        for (int k = 0; k < kWords; ++k)
          idx[k] = bit_select(__hgt2_mask(*reinterpret_cast<const __nv_bfloat162*>(&best[k]), zero), idx[k],
                              0x00FF00FFu);
      }
      Pack<std::uint32_t, kWords / 2> m;  // the low byte of each 16-bit index, in channel order
#pragma unroll
      for (int k = 0; k < kWords / 2; ++k) m.v[k] = __byte_perm(idx[2 * k], idx[2 * k + 1], 0x6420);
      *reinterpret_cast<Pack<std::uint32_t, kWords / 2>*>(mask + static_cast<long long>(q) * a.c + c) = m;
    }
  }
}

// bf16 MAX backward on packed pairs: four mask bytes compared with the tap's position at once
// (__vcmpeq4), each pair of dy values kept or zeroed by the matching lane mask, the sums in
// fp32 in the same order as the general kernel (adding +0 for a window the input did not win
// changes no sum), so the results are the general kernel's bit for bit.
template <int V>
__global__ void pool_max_bwd_nhwc_bf16_kernel(PoolNhwcArgs b, const __nv_bfloat16* __restrict__ dy,
                                              const std::uint8_t* __restrict__ mask, __nv_bfloat16* dx,
                                              bool accumulate) {
  constexpr int kWords = V / 2;
  const PoolArgs& a = b.a;
  const unsigned total = static_cast<unsigned>(a.n) * a.h * a.w * b.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const BwdSite st = bwd_site(a, b.groups, V, j);
    const int n = st.n, iy = st.iy, ix = st.ix, c = st.c, oy0 = st.oy0, oy1 = st.oy1, ox0 = st.ox0,
              ox1 = st.ox1;
    const __nv_bfloat16* dyp = dy + n * b.y.ns + c;
    const std::uint8_t* mp = mask + static_cast<long long>(n) * a.ho * a.wo * a.c + c;
    float g[V];
#pragma unroll
    for (int e = 0; e < V; ++e) g[e] = 0.f;
    for (int oy = oy0; oy < oy1; ++oy)
      for (int ox = ox0; ox < ox1; ++ox) {
        const int o = oy * a.wo + ox;
        const Pack<std::uint32_t, kWords> d =
            *reinterpret_cast<const Pack<std::uint32_t, kWords>*>(dyp + static_cast<long long>(o) * b.y.pix);
        const Pack<std::uint32_t, kWords / 2> m =
            *reinterpret_cast<const Pack<std::uint32_t, kWords / 2>*>(mp + static_cast<long long>(o) * a.c);
        const std::uint32_t rel =
            static_cast<std::uint32_t>((iy - (oy * a.sh - a.ph)) * a.kw + (ix - (ox * a.sw - a.pw))) *
            0x01010101u;
#pragma unroll
        for (int k = 0; k < kWords / 2; ++k) {
          const std::uint32_t eq = __vcmpeq4(m.v[k], rel);  // 0xFF per channel this input won
          const std::uint32_t lo = d.v[2 * k] & __byte_perm(eq, 0, 0x1100);
          const std::uint32_t hi = d.v[2 * k + 1] & __byte_perm(eq, 0, 0x3322);
          g[4 * k + 0] += __uint_as_float(lo << 16);
          g[4 * k + 1] += __uint_as_float(lo & 0xFFFF0000u);
          g[4 * k + 2] += __uint_as_float(hi << 16);
          g[4 * k + 3] += __uint_as_float(hi & 0xFFFF0000u);
        }
      }
    __nv_bfloat16* dp = dx + n * b.x.ns + static_cast<long long>(iy * a.w + ix) * b.x.pix + c;
    Pack<__nv_bfloat16, V> out;
    if (accumulate) out = *reinterpret_cast<const Pack<__nv_bfloat16, V>*>(dp);
#pragma unroll
    for (int e = 0; e < V; ++e)
      out.v[e] = from_f32<__nv_bfloat16>(accumulate ? g[e] + to_f32(out.v[e]) : g[e]);
    *reinterpret_cast<Pack<__nv_bfloat16, V>*>(dp) = out;
  }
}

PoolArgs make_args(const Nchw& xs, const PoolGeom& g, const Nchw& ys) {
  return PoolArgs{xs.n,         xs.c,       xs.h,       xs.w,       ys.h,       ys.w,    xs.nstride(),
                  ys.nstride(), g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w};
}

void check_shapes(const Nchw& xs, const PoolGeom& g, const Nchw& ys) {
  const Nchw want = pool_out_shape(xs, g);
  if (want.n != ys.n || want.c != ys.c || want.h != ys.h || want.w != ys.w)
    throw Error("pool: output view does not match the CEIL pooling output shape");
}

}  // namespace

template <typename T>
void pool_fwd(const Nchw& xs, const T* x, const PoolGeom& g0, const Nchw& ys, T* y, std::int32_t* mask,
              cudaStream_t stream) {
  check_shapes(xs, g0, ys);
  if (ys.count() == 0) return;
  const PoolGeom g = pool_resolve(xs, g0);
  const PoolArgs a = make_args(xs, g, ys);
  const unsigned blocks = grid_for(static_cast<std::size_t>(ys.count()), kThreads);
  const bool small = xs.count() < (std::int64_t(1) << 31) && ys.count() < (std::int64_t(1) << 31);
  if (g.method == PoolMethod::kMax) {
    if (small)
      pool_fwd_kernel<T, true, unsigned><<<blocks, kThreads, 0, stream>>>(a, x, y, mask);
    else
      pool_fwd_kernel<T, true, long long><<<blocks, kThreads, 0, stream>>>(a, x, y, mask);
  } else {
    if (small)
      pool_fwd_kernel<T, false, unsigned><<<blocks, kThreads, 0, stream>>>(a, x, y, nullptr);
    else
      pool_fwd_kernel<T, false, long long><<<blocks, kThreads, 0, stream>>>(a, x, y, nullptr);
  }
  KERNEL_CHECK("pool_fwd_kernel");
}

template <typename T>
void pool_bwd(const Nchw& xs, const PoolGeom& g0, const Nchw& ys, const T* dy, const std::int32_t* mask,
              T* dx, bool accumulate, cudaStream_t stream) {
  check_shapes(xs, g0, ys);
  if (xs.count() == 0) return;
  const PoolGeom g = pool_resolve(xs, g0);
  const PoolArgs a = make_args(xs, g, ys);
  const std::size_t runs = std::size_t(xs.n) * xs.c * xs.h * ((xs.w + kVec - 1) / kVec);
  const unsigned blocks = grid_for(runs, kThreads);
  const bool small = xs.count() < (std::int64_t(1) << 31) && ys.count() < (std::int64_t(1) << 31);
  if (g.method == PoolMethod::kMax) {
    if (mask == nullptr) throw Error("pool_bwd: MAX pooling backward needs the forward mask");
    if (small)
      pool_bwd_kernel<T, true, unsigned><<<blocks, kThreads, 0, stream>>>(a, dy, mask, dx, accumulate);
    else
      pool_bwd_kernel<T, true, long long><<<blocks, kThreads, 0, stream>>>(a, dy, mask, dx, accumulate);
  } else {
    if (small)
      pool_bwd_kernel<T, false, unsigned><<<blocks, kThreads, 0, stream>>>(a, dy, nullptr, dx, accumulate);
    else
      pool_bwd_kernel<T, false, long long><<<blocks, kThreads, 0, stream>>>(a, dy, nullptr, dx, accumulate);
  }
  KERNEL_CHECK("pool_bwd_kernel");
}

namespace {

// Whether views and pointers allow `bytes`-wide channel groups (16 or 32 bytes: two 16-byte
// accesses per thread halve the index math per element and keep more loads in flight).
template <typename T>
bool pool_vector_ok(const Nchw& xs, const void* x, const Nchw& ys, const void* y, int bytes) {
  const int v = bytes / int(sizeof(T));
  auto aligned = [&](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; };
  return xs.c % v == 0 && nhwc_args(xs).pix % v == 0 && nhwc_args(ys).pix % v == 0 && xs.nstride() % v == 0 &&
         ys.nstride() % v == 0 && aligned(x) && aligned(y);
}

template <typename T, int V>
void launch_pool_nhwc(bool fwd, const Nchw& xs, const T* x, const PoolGeom& g, const Nchw& ys, const T* dy,
                      T* y_or_dx, std::uint8_t* mask, bool accumulate, cudaStream_t stream,
                      bool relu_mask = false) {
  const PoolNhwcArgs b{make_args(xs, g, ys), nhwc_args(xs), nhwc_args(ys), xs.c / V};
  const bool mx = g.method == PoolMethod::kMax;
  constexpr bool kPacked = std::is_same_v<T, __nv_bfloat16> && V % 8 == 0;  // bf16 MAX on packed pairs
  if (fwd) {
    const unsigned blocks = grid_for(static_cast<std::size_t>(ys.count() / V), kThreads);
    if constexpr (kPacked)
      if (mx) {
        pool_max_fwd_nhwc_bf16_kernel<V><<<blocks, kThreads, 0, stream>>>(b, x, y_or_dx, mask, relu_mask);
        KERNEL_CHECK("pool_max_fwd_nhwc_bf16_kernel");
        return;
      }
    if (mx)
      pool_fwd_nhwc_kernel<T, V, true><<<blocks, kThreads, 0, stream>>>(b, x, y_or_dx, mask, relu_mask);
    else
      pool_fwd_nhwc_kernel<T, V, false><<<blocks, kThreads, 0, stream>>>(b, x, y_or_dx, nullptr, false);
    KERNEL_CHECK("pool_fwd_nhwc_kernel");
  } else {
    const unsigned blocks = grid_for(static_cast<std::size_t>(xs.count() / V), kThreads);
    if constexpr (kPacked)
      if (mx) {
        pool_max_bwd_nhwc_bf16_kernel<V><<<blocks, kThreads, 0, stream>>>(b, dy, mask, y_or_dx, accumulate);
        KERNEL_CHECK("pool_max_bwd_nhwc_bf16_kernel");
        return;
      }
    if (mx)
      pool_bwd_nhwc_kernel<T, V, true><<<blocks, kThreads, 0, stream>>>(b, dy, mask, y_or_dx, accumulate);
    else
      pool_bwd_nhwc_kernel<T, V, false><<<blocks, kThreads, 0, stream>>>(b, dy, nullptr, y_or_dx, accumulate);
    KERNEL_CHECK("pool_bwd_nhwc_kernel");
  }
}

}  // namespace

template <typename T>
void pool_fwd_nhwc(const Nchw& xs, const T* x, const PoolGeom& g0, const Nchw& ys, T* y, std::uint8_t* mask,
                   cudaStream_t stream, bool relu_mask) {
  check_shapes(xs, g0, ys);
  check_nhwc_view(xs, "pool_fwd_nhwc");
  check_nhwc_view(ys, "pool_fwd_nhwc");
  if (ys.count() == 0) return;
  const PoolGeom g = pool_resolve(xs, g0);
  if (g.method == PoolMethod::kMax && g.kernel_h * g.kernel_w > 255)
    throw Error("pool_fwd_nhwc: MAX windows of more than 255 taps do not fit the uint8 mask");
  if (relu_mask && (g.method != PoolMethod::kMax || mask == nullptr))
    throw Error("pool_fwd_nhwc: relu_mask needs MAX pooling with a mask");
  if (pool_vector_ok<T>(xs, x, ys, y, 32))
    launch_pool_nhwc<T, 2 * kVec16<T>>(true, xs, x, g, ys, nullptr, y, mask, false, stream, relu_mask);
  else if (pool_vector_ok<T>(xs, x, ys, y, 16))
    launch_pool_nhwc<T, kVec16<T>>(true, xs, x, g, ys, nullptr, y, mask, false, stream, relu_mask);
  else
    launch_pool_nhwc<T, 1>(true, xs, x, g, ys, nullptr, y, mask, false, stream, relu_mask);
}

template <typename T>
void pool_bwd_nhwc(const Nchw& xs, const PoolGeom& g0, const Nchw& ys, const T* dy, const std::uint8_t* mask,
                   T* dx, bool accumulate, cudaStream_t stream) {
  check_shapes(xs, g0, ys);
  check_nhwc_view(xs, "pool_bwd_nhwc");
  check_nhwc_view(ys, "pool_bwd_nhwc");
  if (xs.count() == 0) return;
  const PoolGeom g = pool_resolve(xs, g0);
  if (g.method == PoolMethod::kMax && mask == nullptr)
    throw Error("pool_bwd_nhwc: MAX pooling backward needs the forward mask");
  if (pool_vector_ok<T>(xs, dx, ys, dy, 32))
    launch_pool_nhwc<T, 2 * kVec16<T>>(false, xs, nullptr, g, ys, dy, dx, const_cast<std::uint8_t*>(mask),
                                       accumulate, stream);
  else if (pool_vector_ok<T>(xs, dx, ys, dy, 16))
    launch_pool_nhwc<T, kVec16<T>>(false, xs, nullptr, g, ys, dy, dx, const_cast<std::uint8_t*>(mask),
                                   accumulate, stream);
  else
    launch_pool_nhwc<T, 1>(false, xs, nullptr, g, ys, dy, dx, const_cast<std::uint8_t*>(mask), accumulate,
                           stream);
}

#define INCEPT_INSTANTIATE(T)                                                                              \
  template void pool_fwd<T>(const Nchw&, const T*, const PoolGeom&, const Nchw&, T*, std::int32_t*,        \
                            cudaStream_t);                                                                 \
  template void pool_bwd<T>(const Nchw&, const PoolGeom&, const Nchw&, const T*, const std::int32_t*, T*,  \
                            bool, cudaStream_t);                                                           \
  template void pool_fwd_nhwc<T>(const Nchw&, const T*, const PoolGeom&, const Nchw&, T*, std::uint8_t*,   \
                                 cudaStream_t, bool);                                                      \
  template void pool_bwd_nhwc<T>(const Nchw&, const PoolGeom&, const Nchw&, const T*, const std::uint8_t*, \
                                 T*, bool, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

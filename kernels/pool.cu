// MAX / AVE pooling kernels (pool_gpu.h). Forward: one thread per output element.
// Backward: one thread per run of 4 input columns gathering from the output windows that
// cover them (Caffe's MaxPoolBackward/AvePoolBackward gather), so no atomics and no zero-fill pass.
#include <cfloat>

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

template <typename T, int V, bool kMax>
__global__ void pool_fwd_nhwc_kernel(PoolNhwcArgs b, const T* __restrict__ x, T* __restrict__ y,
                                     std::uint8_t* __restrict__ mask) {
  const PoolArgs& a = b.a;
  const unsigned total = static_cast<unsigned>(a.n) * a.ho * a.wo * b.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const unsigned q = j / b.groups;
    const int c = static_cast<int>(j - q * b.groups) * V;
    const unsigned r = q / a.wo;
    const int ox = static_cast<int>(q - r * a.wo);
    const int n = static_cast<int>(r / a.ho), oy = static_cast<int>(r - static_cast<unsigned>(n) * a.ho);
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
      for (int e = 0; e < V; ++e) m.v[e] = static_cast<std::uint8_t>(idx[e] < 0 ? 255 : idx[e]);
      *reinterpret_cast<Pack<std::uint8_t, V>*>(mask + static_cast<long long>(q) * a.c + c) = m;
    }
  }
}

template <typename T, int V, bool kMax>
__global__ void pool_bwd_nhwc_kernel(PoolNhwcArgs b, const T* __restrict__ dy,
                                     const std::uint8_t* __restrict__ mask, T* dx, bool accumulate) {
  const PoolArgs& a = b.a;
  const unsigned total = static_cast<unsigned>(a.n) * a.h * a.w * b.groups;
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const unsigned q = j / b.groups;
    const int c = static_cast<int>(j - q * b.groups) * V;
    const unsigned r = q / a.w;
    const int ix = static_cast<int>(q - r * a.w);
    const int n = static_cast<int>(r / a.h), iy = static_cast<int>(r - static_cast<unsigned>(n) * a.h);
    const int oy0 = (iy + a.ph < a.kh) ? 0 : (iy + a.ph - a.kh) / a.sh + 1;
    const int oy1 = min((iy + a.ph) / a.sh + 1, a.ho);
    const int ox0 = (ix + a.pw < a.kw) ? 0 : (ix + a.pw - a.kw) / a.sw + 1;
    const int ox1 = min((ix + a.pw) / a.sw + 1, a.wo);
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
                      T* y_or_dx, std::uint8_t* mask, bool accumulate, cudaStream_t stream) {
  const PoolNhwcArgs b{make_args(xs, g, ys), nhwc_args(xs), nhwc_args(ys), xs.c / V};
  const bool mx = g.method == PoolMethod::kMax;
  if (fwd) {
    const unsigned blocks = grid_for(static_cast<std::size_t>(ys.count() / V), kThreads);
    if (mx)
      pool_fwd_nhwc_kernel<T, V, true><<<blocks, kThreads, 0, stream>>>(b, x, y_or_dx, mask);
    else
      pool_fwd_nhwc_kernel<T, V, false><<<blocks, kThreads, 0, stream>>>(b, x, y_or_dx, nullptr);
    KERNEL_CHECK("pool_fwd_nhwc_kernel");
  } else {
    const unsigned blocks = grid_for(static_cast<std::size_t>(xs.count() / V), kThreads);
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
                   cudaStream_t stream) {
  check_shapes(xs, g0, ys);
  check_nhwc_view(xs, "pool_fwd_nhwc");
  check_nhwc_view(ys, "pool_fwd_nhwc");
  if (ys.count() == 0) return;
  const PoolGeom g = pool_resolve(xs, g0);
  if (g.method == PoolMethod::kMax && g.kernel_h * g.kernel_w > 255)
    throw Error("pool_fwd_nhwc: MAX windows of more than 255 taps do not fit the uint8 mask");
  if (pool_vector_ok<T>(xs, x, ys, y, 32))
    launch_pool_nhwc<T, 2 * kVec16<T>>(true, xs, x, g, ys, nullptr, y, mask, false, stream);
  else if (pool_vector_ok<T>(xs, x, ys, y, 16))
    launch_pool_nhwc<T, kVec16<T>>(true, xs, x, g, ys, nullptr, y, mask, false, stream);
  else
    launch_pool_nhwc<T, 1>(true, xs, x, g, ys, nullptr, y, mask, false, stream);
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
                                 cudaStream_t);                                                            \
  template void pool_bwd_nhwc<T>(const Nchw&, const PoolGeom&, const Nchw&, const T*, const std::uint8_t*, \
                                 T*, bool, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

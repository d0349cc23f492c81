// MAX / AVE pooling kernels (pool_gpu.h). Forward: one thread per output element.
// Backward: one thread per run of 4 input columns gathering from the output windows that
// cover them (Caffe's MaxPoolBackward/AvePoolBackward gather), so no atomics and no zero-fill pass.
#include <cfloat>

#include "engine/check.h"
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

#define INCEPT_INSTANTIATE(T)                                                                             \
  template void pool_fwd<T>(const Nchw&, const T*, const PoolGeom&, const Nchw&, T*, std::int32_t*,       \
                            cudaStream_t);                                                                \
  template void pool_bwd<T>(const Nchw&, const PoolGeom&, const Nchw&, const T*, const std::int32_t*, T*, \
                            bool, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

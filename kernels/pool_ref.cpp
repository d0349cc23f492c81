// CPU reference pooling (pool_ref.h): Caffe's MAX and AVE windows, CEIL output size.
#include "kernels/pool_ref.h"

#include <algorithm>
#include <limits>

namespace incept::ref {

namespace {

// One output window: the clipped input range and (for AVE) Caffe's divisor.
struct Window {
  int h0, h1, w0, w1;
  int pool_size;
};

Window window(const PoolGeom& g, int h, int w, int oy, int ox) {
  int h0 = oy * g.stride_h - g.pad_h;
  int w0 = ox * g.stride_w - g.pad_w;
  int h1 = std::min(h0 + g.kernel_h, h + g.pad_h);
  int w1 = std::min(w0 + g.kernel_w, w + g.pad_w);
  const int pool_size = (h1 - h0) * (w1 - w0);
  h0 = std::max(h0, 0);
  w0 = std::max(w0, 0);
  h1 = std::min(h1, h);
  w1 = std::min(w1, w);
  return {h0, h1, w0, w1, pool_size};
}

template <typename T>
int argmax_in(const T* xp, int w, const Window& win) {
  T best = -std::numeric_limits<T>::max();
  int idx = -1;
  for (int iy = win.h0; iy < win.h1; ++iy)
    for (int ix = win.w0; ix < win.w1; ++ix)
      if (xp[iy * w + ix] > best) {
        best = xp[iy * w + ix];
        idx = iy * w + ix;
      }
  return idx;
}

}  // namespace

template <typename T>
void pool_fwd(const Nchw& xs, const T* x, const PoolGeom& g0, const Nchw& ys, T* y, std::int32_t* mask) {
  const PoolGeom g = pool_resolve(xs, g0);
  const std::int64_t plane_in = std::int64_t(xs.h) * xs.w;
  for (int n = 0; n < xs.n; ++n) {
    for (int c = 0; c < xs.c; ++c) {
      const T* xp = x + n * xs.nstride() + c * plane_in;
      T* yp = y + n * ys.nstride() + std::int64_t(c) * ys.h * ys.w;
      std::int32_t* mp = mask ? mask + (std::int64_t(n) * ys.c + c) * ys.h * ys.w : nullptr;
      for (int oy = 0; oy < ys.h; ++oy) {
        for (int ox = 0; ox < ys.w; ++ox) {
          const Window win = window(g, xs.h, xs.w, oy, ox);
          const int o = oy * ys.w + ox;
          if (g.method == PoolMethod::kMax) {
            const int idx = argmax_in(xp, xs.w, win);
            yp[o] = idx >= 0 ? xp[idx] : -std::numeric_limits<T>::max();
            if (mp) mp[o] = idx;
          } else {
            T sum = 0;
            for (int iy = win.h0; iy < win.h1; ++iy)
              for (int ix = win.w0; ix < win.w1; ++ix) sum += xp[iy * xs.w + ix];
            yp[o] = sum / T(win.pool_size);
          }
        }
      }
    }
  }
}

template <typename T>
void pool_bwd(const Nchw& xs, const T* x, const PoolGeom& g0, const Nchw& ys, const T* dy,
              const std::int32_t* mask, T* dx, bool accumulate) {
  const PoolGeom g = pool_resolve(xs, g0);
  const std::int64_t plane_in = std::int64_t(xs.h) * xs.w;
  for (int n = 0; n < xs.n; ++n) {
    for (int c = 0; c < xs.c; ++c) {
      const T* xp = x ? x + n * xs.nstride() + c * plane_in : nullptr;
      T* dxp = dx + n * xs.nstride() + c * plane_in;
      const T* dyp = dy + n * ys.nstride() + std::int64_t(c) * ys.h * ys.w;
      const std::int32_t* mp = mask ? mask + (std::int64_t(n) * ys.c + c) * ys.h * ys.w : nullptr;
      if (!accumulate) std::fill(dxp, dxp + plane_in, T(0));
      for (int oy = 0; oy < ys.h; ++oy) {
        for (int ox = 0; ox < ys.w; ++ox) {
          const Window win = window(g, xs.h, xs.w, oy, ox);
          const int o = oy * ys.w + ox;
          if (g.method == PoolMethod::kMax) {
            const int idx = mp ? mp[o] : argmax_in(xp, xs.w, win);
            if (idx >= 0) dxp[idx] += dyp[o];
          } else {
            const T v = dyp[o] / T(win.pool_size);
            for (int iy = win.h0; iy < win.h1; ++iy)
              for (int ix = win.w0; ix < win.w1; ++ix) dxp[iy * xs.w + ix] += v;
          }
        }
      }
    }
  }
}

template void pool_fwd<float>(const Nchw&, const float*, const PoolGeom&, const Nchw&, float*, std::int32_t*);
template void pool_fwd<double>(const Nchw&, const double*, const PoolGeom&, const Nchw&, double*,
                               std::int32_t*);
template void pool_bwd<float>(const Nchw&, const float*, const PoolGeom&, const Nchw&, const float*,
                              const std::int32_t*, float*, bool);
template void pool_bwd<double>(const Nchw&, const double*, const PoolGeom&, const Nchw&, const double*,
                               const std::int32_t*, double*, bool);

}  // namespace incept::ref

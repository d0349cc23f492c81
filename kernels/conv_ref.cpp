// CPU reference convolution (conv_ref.h): im2col + GEMM per image.
#include "kernels/conv_ref.h"

#include <algorithm>
#include <cstring>

#include "kernels/blas_ref.h"

namespace incept::ref {
namespace {

bool pointwise(const ConvGeom& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
         g.pad_w == 0;
}

}  // namespace

Nchw conv_out_shape(const Nchw& x, const ConvGeom& g) {
  return Nchw{x.n, g.num_output, conv_out_dim(x.h, g.kernel_h, g.stride_h, g.pad_h),
              conv_out_dim(x.w, g.kernel_w, g.stride_w, g.pad_w)};
}

std::int64_t conv_col_elems(const Nchw& x, const ConvGeom& g) {
  if (pointwise(g)) return 0;
  const Nchw y = conv_out_shape(x, g);
  return std::int64_t(x.c) * g.kernel_h * g.kernel_w * y.h * y.w;
}

template <typename T>
void im2col(const T* x, int c, int h, int w, const ConvGeom& g, T* col) {
  const int ho = conv_out_dim(h, g.kernel_h, g.stride_h, g.pad_h);
  const int wo = conv_out_dim(w, g.kernel_w, g.stride_w, g.pad_w);
  for (int ci = 0; ci < c; ++ci) {
    const T* xc = x + std::int64_t(ci) * h * w;
    for (int r = 0; r < g.kernel_h; ++r) {
      for (int s = 0; s < g.kernel_w; ++s) {
        for (int oy = 0; oy < ho; ++oy) {
          const int iy = oy * g.stride_h - g.pad_h + r;
          T* dst = col + std::int64_t(oy) * wo;
          if (iy < 0 || iy >= h) {
            std::fill(dst, dst + wo, T(0));
            continue;
          }
          const T* src = xc + std::int64_t(iy) * w;
          for (int ox = 0; ox < wo; ++ox) {
            const int ix = ox * g.stride_w - g.pad_w + s;
            dst[ox] = (ix >= 0 && ix < w) ? src[ix] : T(0);
          }
        }
        col += std::int64_t(ho) * wo;
      }
    }
  }
}

template <typename T>
void col2im_add(const T* col, int c, int h, int w, const ConvGeom& g, T* x) {
  const int ho = conv_out_dim(h, g.kernel_h, g.stride_h, g.pad_h);
  const int wo = conv_out_dim(w, g.kernel_w, g.stride_w, g.pad_w);
  for (int ci = 0; ci < c; ++ci) {
    T* xc = x + std::int64_t(ci) * h * w;
    for (int r = 0; r < g.kernel_h; ++r) {
      for (int s = 0; s < g.kernel_w; ++s) {
        for (int oy = 0; oy < ho; ++oy) {
          const int iy = oy * g.stride_h - g.pad_h + r;
          const T* src = col + std::int64_t(oy) * wo;
          if (iy < 0 || iy >= h) continue;
          T* dst = xc + std::int64_t(iy) * w;
          for (int ox = 0; ox < wo; ++ox) {
            const int ix = ox * g.stride_w - g.pad_w + s;
            if (ix >= 0 && ix < w) dst[ix] += src[ox];
          }
        }
        col += std::int64_t(ho) * wo;
      }
    }
  }
}

template <typename T>
void conv_fwd(const Nchw& xs, const T* x, const ConvGeom& g, const T* w, const T* b, const Nchw& ys, T* y,
              T* col) {
  const int k = g.num_output;
  const int p = ys.h * ys.w;
  const int crs = xs.c * g.kernel_h * g.kernel_w;
  for (int n = 0; n < xs.n; ++n) {
    const T* xn = x + n * xs.nstride();
    T* yn = y + n * ys.nstride();
    const T* src = xn;
    if (!pointwise(g)) {
      im2col(xn, xs.c, xs.h, xs.w, g, col);
      src = col;
    }
    gemm(false, false, k, p, crs, T(1), w, crs, src, p, T(0), yn, p);
    if (g.bias && b) {
      for (int ki = 0; ki < k; ++ki) {
        T* row = yn + std::int64_t(ki) * p;
        for (int i = 0; i < p; ++i) row[i] += b[ki];
      }
    }
  }
}

template <typename T>
void conv_bwd_data(const Nchw& ys, const T* dy, const ConvGeom& g, const T* w, const Nchw& xs, T* dx, T* col,
                   bool accumulate) {
  const int k = g.num_output;
  const int p = ys.h * ys.w;
  const int crs = xs.c * g.kernel_h * g.kernel_w;
  for (int n = 0; n < xs.n; ++n) {
    const T* dyn = dy + n * ys.nstride();
    T* dxn = dx + n * xs.nstride();
    if (pointwise(g)) {
      gemm(true, false, crs, p, k, T(1), w, crs, dyn, p, accumulate ? T(1) : T(0), dxn, p);
      continue;
    }
    gemm(true, false, crs, p, k, T(1), w, crs, dyn, p, T(0), col, p);
    if (!accumulate) std::fill(dxn, dxn + xs.image(), T(0));
    col2im_add(col, xs.c, xs.h, xs.w, g, dxn);
  }
}

template <typename T>
void conv_bwd_filter(const Nchw& xs, const T* x, const Nchw& ys, const T* dy, const ConvGeom& g, T* dw, T* db,
                     T* col) {
  const int k = g.num_output;
  const int p = ys.h * ys.w;
  const int crs = xs.c * g.kernel_h * g.kernel_w;
  for (int n = 0; n < xs.n; ++n) {
    const T* xn = x + n * xs.nstride();
    const T* dyn = dy + n * ys.nstride();
    const T* src = xn;
    if (!pointwise(g)) {
      im2col(xn, xs.c, xs.h, xs.w, g, col);
      src = col;
    }
    gemm(false, true, k, crs, p, T(1), dyn, p, src, p, T(1), dw, crs);
    if (g.bias && db) {
      for (int ki = 0; ki < k; ++ki) {
        const T* row = dyn + std::int64_t(ki) * p;
        T sum = 0;
        for (int i = 0; i < p; ++i) sum += row[i];
        db[ki] += sum;
      }
    }
  }
}

#define INCEPT_INSTANTIATE(T)                                                                            \
  template void im2col<T>(const T*, int, int, int, const ConvGeom&, T*);                                 \
  template void col2im_add<T>(const T*, int, int, int, const ConvGeom&, T*);                             \
  template void conv_fwd<T>(const Nchw&, const T*, const ConvGeom&, const T*, const T*, const Nchw&, T*, \
                            T*);                                                                         \
  template void conv_bwd_data<T>(const Nchw&, const T*, const ConvGeom&, const T*, const Nchw&, T*, T*,  \
                                 bool);                                                                  \
  template void conv_bwd_filter<T>(const Nchw&, const T*, const Nchw&, const T*, const ConvGeom&, T*, T*, T*);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(double)
#undef INCEPT_INSTANTIATE

}  // namespace incept::ref

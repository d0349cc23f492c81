// CPU reference of the channels-last im2col (im2col_ref.h).
#include "kernels/im2col_ref.h"

#include "kernels/layout.h"

namespace incept::ref {

template <typename T>
void im2col_nhwc(const Nchw& xs, const T* x, const ConvGeom& g, int ld, T* cols) {
  const int ho = conv_out_dim(xs.h, g.kernel_h, g.stride_h, g.pad_h);
  const int wo = conv_out_dim(xs.w, g.kernel_w, g.stride_w, g.pad_w);
  const int kc = g.kernel_h * g.kernel_w * xs.c;
  std::int64_t p = 0;
  for (int n = 0; n < xs.n; ++n)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox, ++p) {
        T* row = cols + p * ld;
        for (int r = 0; r < g.kernel_h; ++r)
          for (int s = 0; s < g.kernel_w; ++s)
            for (int c = 0; c < xs.c; ++c) {
              const int iy = oy * g.stride_h - g.pad_h + r, ix = ox * g.stride_w - g.pad_w + s;
              const bool in = iy >= 0 && iy < xs.h && ix >= 0 && ix < xs.w;
              row[(r * g.kernel_w + s) * xs.c + c] = in ? x[nhwc_offset(xs, n, c, iy, ix)] : T(0);
            }
        for (int j = kc; j < ld; ++j) row[j] = T(0);
      }
}

template <typename T>
void col2im_nhwc(const Nchw& xs, const T* cols, const ConvGeom& g, int ld, T* dx, bool accumulate) {
  const int ho = conv_out_dim(xs.h, g.kernel_h, g.stride_h, g.pad_h);
  const int wo = conv_out_dim(xs.w, g.kernel_w, g.stride_w, g.pad_w);
  if (!accumulate)
    for (int n = 0; n < xs.n; ++n)
      for (int c = 0; c < xs.c; ++c)
        for (int h = 0; h < xs.h; ++h)
          for (int w = 0; w < xs.w; ++w) dx[nhwc_offset(xs, n, c, h, w)] = T(0);
  std::int64_t p = 0;
  for (int n = 0; n < xs.n; ++n)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox, ++p)
        for (int r = 0; r < g.kernel_h; ++r)
          for (int s = 0; s < g.kernel_w; ++s) {
            const int iy = oy * g.stride_h - g.pad_h + r, ix = ox * g.stride_w - g.pad_w + s;
            if (iy < 0 || iy >= xs.h || ix < 0 || ix >= xs.w) continue;
            for (int c = 0; c < xs.c; ++c)
              dx[nhwc_offset(xs, n, c, iy, ix)] += cols[p * ld + (r * g.kernel_w + s) * xs.c + c];
          }
}

template <typename T>
void pad_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < dst_cols; ++j)
      dst[std::int64_t(r) * dst_cols + j] = j < src_cols ? src[std::int64_t(r) * src_cols + j] : T(0);
}

template <typename T>
void unpad_add_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < dst_cols; ++j)
      dst[std::int64_t(r) * dst_cols + j] += src[std::int64_t(r) * src_cols + j];
}

template void im2col_nhwc<float>(const Nchw&, const float*, const ConvGeom&, int, float*);
template void im2col_nhwc<double>(const Nchw&, const double*, const ConvGeom&, int, double*);
template void col2im_nhwc<float>(const Nchw&, const float*, const ConvGeom&, int, float*, bool);
template void col2im_nhwc<double>(const Nchw&, const double*, const ConvGeom&, int, double*, bool);
template void pad_rows<float>(int, int, int, const float*, float*);

void flip_filters_nhwc(int cout, int kh, int kw, int cin, const float* w, float* wt) {
  for (int c = 0; c < cin; ++c)
    for (int r = 0; r < kh; ++r)
      for (int s = 0; s < kw; ++s)
        for (int o = 0; o < cout; ++o)
          wt[((std::int64_t(c) * kh + r) * kw + s) * cout + o] =
              w[((std::int64_t(o) * kh + (kh - 1 - r)) * kw + (kw - 1 - s)) * cin + c];
}
template void unpad_add_rows<float>(int, int, int, const float*, float*);

}  // namespace incept::ref

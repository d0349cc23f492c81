// CPU reference of the channels-last im2col that turns a convolution with few input channels
// (GoogLeNet's conv1: C = 3, where cuDNN's NHWC tensor-core kernels are slow) into one GEMM:
//   cols[p, (r * S + s) * C + c] = x[n, c, oy * stride_h - pad_h + r, ox * stride_w - pad_w + s]
// for output pixel p = (n * Ho + oy) * Wo + ox, zero where the tap falls into the padding and
// in the columns [R * S * C, ld) that pad each row to an aligned length.
// Layouts: x is a channels-last view (kernels/layout.h), cols dense [N * Ho * Wo, ld].
// Then y[p, k] = sum_j cols[p, j] * w[k, j] with w the KRSC filters (rows padded to ld).
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace incept::ref {

template <typename T>
void im2col_nhwc(const Nchw& xs, const T* x, const ConvGeom& g, int ld, T* cols);

// dx (= or +=) the adjoint of im2col_nhwc: each cols entry added to the x element it came from.
template <typename T>
void col2im_nhwc(const Nchw& xs, const T* cols, const ConvGeom& g, int ld, T* dx, bool accumulate);

// wt[c][r'][s'][o] = w[o][kh - 1 - r'][kw - 1 - s'][c] (kernels/im2col_gpu.h's flip_filters_nhwc).
void flip_filters_nhwc(int cout, int kh, int kw, int cin, const float* w, float* wt);

// dst[r, j] = j < src_cols ? src[r * src_cols + j] : 0 for j < dst_cols (dst_cols >= src_cols).
template <typename T>
void pad_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst);
// dst[r * dst_cols + j] += src[r * src_cols + j] for j < dst_cols (src_cols >= dst_cols).
template <typename T>
void unpad_add_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst);

}  // namespace incept::ref

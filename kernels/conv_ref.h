// CPU reference of Caffe's Convolution layer: forward, backward to the input (data) and
// backward to the filters and bias. im2col + OpenBLAS GEMM per image, so GoogLeNet at batch 2
// runs forward+backward in seconds. It is the oracle the cuDNN path is tested against.
//
// Layouts: x and y are NCHW views (kernels/shapes.h; n_stride may exceed C*H*W when the view
// is a channel slice of a concat output). Filters w are KCRS dense, bias b[K] (may be null
// when geometry.bias is false). The workspace `col` holds C*R*S*Ho*Wo elements of T
// (conv_col_elems); 1x1/stride-1/pad-0 convolutions do not touch it.
//
// Gradient contract: dw and db ACCUMULATE (+=); dx is overwritten unless accumulate is true
// (fan-out: several consumers of one blob add their gradients).
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace incept::ref {

// Output shape (N, K, Ho, Wo) of a convolution of `x` (dense view).
Nchw conv_out_shape(const Nchw& x, const ConvGeom& g);
// Workspace elements (of T) that conv_fwd/bwd need for input shape x; 0 for pointwise 1x1.
std::int64_t conv_col_elems(const Nchw& x, const ConvGeom& g);

// y = conv(x, w) + b. y: NCHW view, shape conv_out_shape(xs, g).
template <typename T>
void conv_fwd(const Nchw& xs, const T* x, const ConvGeom& g, const T* w, const T* b, const Nchw& ys, T* y,
              T* col);

// dx (= or +=) conv_transpose(dy, w). dx uses the view xs, dy the view ys.
template <typename T>
void conv_bwd_data(const Nchw& ys, const T* dy, const ConvGeom& g, const T* w, const Nchw& xs, T* dx, T* col,
                   bool accumulate = false);

// dw += dy (x) x over the batch; db[k] += sum of dy over N, H, W (db may be null).
template <typename T>
void conv_bwd_filter(const Nchw& xs, const T* x, const Nchw& ys, const T* dy, const ConvGeom& g, T* dw, T* db,
                     T* col);

// Caffe's im2col / col2im for one image (dense C*H*W plane stack). col is [C*R*S, Ho*Wo].
template <typename T>
void im2col(const T* x, int c, int h, int w, const ConvGeom& g, T* col);
// Adds col back into x (x must be zeroed by the caller for overwrite semantics).
template <typename T>
void col2im_add(const T* col, int c, int h, int w, const ConvGeom& g, T* x);

}  // namespace incept::ref

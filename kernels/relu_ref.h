// CPU reference of ReLU (Caffe, negative_slope 0) and the per-channel bias add / bias
// gradient that convolution and inner product use.
//
// Layouts: NCHW views (n_stride may exceed C*H*W). In place is allowed (y == x, dx == dy):
// GoogLeNet's ReLUs are in place, so backward reads y (y > 0 exactly where x > 0).
// Gradient contract: dx is overwritten unless accumulate is true; db accumulates (+=).
#pragma once

#include "kernels/shapes.h"

namespace incept::ref {

// y = max(x, 0)
template <typename T>
void relu_fwd(const Nchw& s, const T* x, T* y);
// dx (= or +=) dy * (y > 0)
template <typename T>
void relu_bwd(const Nchw& s, const T* y, const T* dy, T* dx, bool accumulate = false);

// y[n,c,h,w] += b[c]
template <typename T>
void bias_add(const Nchw& s, const T* b, T* y);
// db[c] += sum over n, h, w of dy[n,c,h,w]
template <typename T>
void bias_grad(const Nchw& s, const T* dy, T* db);

}  // namespace incept::ref

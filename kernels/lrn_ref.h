// CPU reference of Caffe's LRN layer, ACROSS_CHANNELS, forward and backward.
//
//   scale[n,c,h,w] = k + alpha / local_size * sum_{c' = c - (size-1)/2 .. c + (size-1)/2} x[n,c',h,w]^2
//   y = x * scale^-beta
//   dx = dy * scale^-beta
//        - 2 * alpha * beta / local_size * x * sum_{c' in window(c)} dy[c'] * y[c'] / scale[c']
// (the channel window is clipped to [0, C); local_size is odd). alpha is divided by
// local_size as Caffe does (cuDNN's LRN takes the undivided alpha and does the same division).
//
// Layouts: x, y and their gradients are NCHW views (n_stride may exceed C*H*W); `scale` is a
// dense NCHW buffer of x's logical count, written by forward and read by backward.
// Gradient contract: dx is overwritten unless accumulate is true.
#pragma once

#include "kernels/shapes.h"

namespace incept::ref {

template <typename T>
void lrn_fwd(const Nchw& xs, const T* x, const LrnGeom& g, const Nchw& ys, T* y, T* scale);

template <typename T>
void lrn_bwd(const Nchw& xs, const T* x, const Nchw& ys, const T* y, const T* dy, const T* scale,
             const LrnGeom& g, T* dx, bool accumulate = false);

}  // namespace incept::ref

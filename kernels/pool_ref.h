// CPU reference of Caffe's Pooling layer (MAX and AVE), forward and backward.
//
// Caffe's rules, which cuDNN does not all share (the GPU path must match these):
// - Output size: CEIL rounding, and with padding the last window must start inside the
//   image (pool_out_dim in kernels/shapes.h). 56 -> 28 for k3 s2, where floor gives 27.
// - MAX: window [h0, min(h0 + k, H)) clipped to [0, H); the first maximum in row-major scan
//   order wins (strict >); padding never wins. argmax is an index h*W + w into the input plane.
// - AVE: the divisor is the window clipped to [-pad, H + pad) (padding counts, the CEIL
//   overhang beyond H + pad does not), while the sum runs over the window clipped to the image.
//   cuDNN's COUNT_INCLUDE_PADDING uses the full k*k: different at CEIL edge windows.
// - global: kernel = input H, W, stride 1, pad 0.
//
// Layouts: x, y are NCHW views (n_stride may exceed C*H*W); `mask` (optional, int32) is dense
// with y's logical shape. Gradient contract: dx is overwritten unless accumulate is true.
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace incept::ref {

// Geometry and output shape: pool_resolve / pool_out_shape in kernels/shapes.h.

// y = pool(x). For MAX, mask (may be null) receives the argmax of each output.
template <typename T>
void pool_fwd(const Nchw& xs, const T* x, const PoolGeom& g, const Nchw& ys, T* y,
              std::int32_t* mask = nullptr);

// dx (= or +=) pool_backward(dy). MAX uses `mask` when given, else recomputes the argmax
// from x (the same first-maximum rule); AVE ignores x and mask.
template <typename T>
void pool_bwd(const Nchw& xs, const T* x, const PoolGeom& g, const Nchw& ys, const T* dy,
              const std::int32_t* mask, T* dx, bool accumulate = false);

}  // namespace incept::ref

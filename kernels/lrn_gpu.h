// GPU launchers for Caffe's cross-channel LRN, forward and backward. Same formulas and
// argument order as the CPU reference kernels/lrn_ref.h (incept::ref::lrn_fwd/lrn_bwd):
//   scale = k + alpha / local_size * sum_{window(c)} x^2,   y = x * scale^-beta
//   dx = dy * scale^-beta - 2 alpha beta / local_size * x * sum_{window(c)} dy * y / scale
//
// x, y, dy, dx: NCHW views of dtype T (float or __nv_bfloat16; n_stride may exceed C*H*W).
// scale: dense NCHW fp32 with x's logical shape, or null. Forward writes it when given;
// backward reads it when given and recomputes it from x when null (saves its memory and
// one write + one read of it per step, at the cost of re-reading x from cache).
// Gradient contract: dx is overwritten unless accumulate; dx must not alias dy or x. Launchers never allocate
// or sync.
#pragma once

#include <cuda_runtime.h>

#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept::kernels {

template <typename T>
void lrn_fwd(const Nchw& xs, const T* x, const LrnGeom& g, const Nchw& ys, T* y, float* scale,
             cudaStream_t stream);

template <typename T>
void lrn_bwd(const Nchw& xs, const T* x, const Nchw& ys, const T* y, const T* dy, const float* scale,
             const LrnGeom& g, T* dx, bool accumulate, cudaStream_t stream);

// Channels-last variants (views as in bias_relu_gpu.h: pixel stride P = nstride() / (H * W)),
// with the same formulas; scale: dense fp32 in NHWC order with x's logical shape, or null.
template <typename T>
void lrn_fwd_nhwc(const Nchw& xs, const T* x, const LrnGeom& g, const Nchw& ys, T* y, float* scale,
                  cudaStream_t stream);

// relu_mask: x is the output of a ReLU whose only consumer is this LRN, and dx is also that
// ReLU's input gradient: 0 where x <= 0 (saves the ReLU's own pass; needs !accumulate).
template <typename T>
void lrn_bwd_nhwc(const Nchw& xs, const T* x, const Nchw& ys, const T* y, const T* dy, const float* scale,
                  const LrnGeom& g, T* dx, bool accumulate, cudaStream_t stream, bool relu_mask = false);

}  // namespace incept::kernels

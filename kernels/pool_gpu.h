// GPU launchers for Caffe's MAX and AVE pooling, forward and backward, with Caffe's CEIL
// output size and AVE divisor (see kernels/pool_ref.h, whose rules these follow exactly:
// first maximum wins, padding never wins, AVE divides by the window clipped to
// [-pad, H + pad)). cuDNN's pooling differs at CEIL edge windows, hence hand-written.
//
// x, y, dy, dx: NCHW views of dtype T (float or __nv_bfloat16; n_stride may exceed C*H*W).
// mask: dense int32 with y's logical shape, the argmax h*W + w of each MAX window; forward
// writes it when given. MAX backward needs it (the GPU path never recomputes the argmax).
// Backward gathers (one thread per run of 4 input columns, no atomics): deterministic.
// Gradient contract: dx is overwritten unless accumulate. Launchers never allocate or sync.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept::kernels {

// Geometry and output shape: pool_resolve / pool_out_shape in kernels/shapes.h.

template <typename T>
void pool_fwd(const Nchw& xs, const T* x, const PoolGeom& g, const Nchw& ys, T* y, std::int32_t* mask,
              cudaStream_t stream);

template <typename T>
void pool_bwd(const Nchw& xs, const PoolGeom& g, const Nchw& ys, const T* dy, const std::int32_t* mask, T* dx,
              bool accumulate, cudaStream_t stream);

// Channels-last variants (views as in bias_relu_gpu.h: pixel stride P = nstride() / (H * W)).
// mask: dense uint8 in NHWC order with y's logical shape, the argmax as its position in the
// window: mask[((n * Ho + oy) * Wo + ox) * C + c] = (iy - (oy * sh - ph)) * kw + (ix - (ox * sw - pw))
// (a quarter of the int32 mask's traffic; windows of at most 255 taps). Same rules and same
// results as pool_fwd/bwd.
// relu_mask (MAX, training): x is the output of a ReLU that nothing but this pooling reads; a
// window whose maximum is not positive gets the mask 255 (no winner), so pool_bwd_nhwc passes
// its input no gradient: the input gradient is then that ReLU's too (+0 where x is not
// positive, the same bits elsewhere), and the ReLU's producer need not apply its mask.
template <typename T>
void pool_fwd_nhwc(const Nchw& xs, const T* x, const PoolGeom& g, const Nchw& ys, T* y, std::uint8_t* mask,
                   cudaStream_t stream, bool relu_mask = false);

template <typename T>
void pool_bwd_nhwc(const Nchw& xs, const PoolGeom& g, const Nchw& ys, const T* dy, const std::uint8_t* mask,
                   T* dx, bool accumulate, cudaStream_t stream);

}  // namespace incept::kernels

// GPU launchers for ReLU, per-channel bias add and bias gradient, fused where a step runs
// them back to back: conv/FC output -> (bias +) ReLU in place, and in backward
// ReLU-backward + bias gradient in one pass (the masked gradient is what cuDNN's dgrad and
// wgrad read next). CPU reference: kernels/relu_ref.h (incept::ref).
//
// Every buffer is an NCHW view of dtype T (float or __nv_bfloat16; n_stride may exceed
// C*H*W for a channel slice of a concat output); bias and bias gradient are [C] of T.
// Launchers never allocate and never synchronize.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept::kernels {

// y = relu(y + bias[c]) in place (bias may be null: ReLU only; relu false: bias only).
template <typename T>
void bias_relu_fwd(const Nchw& s, const T* bias, bool relu, T* y, cudaStream_t stream);

// ---- channels-last (NHWC) views -----------------------------------------------------------
// An Nchw shape read channels-last: element (n, c, h, w) at n * nstride() + (h * W + w) * P + c
// with pixel stride P = nstride() / (H * W) (P > C for a channel slice of a concat output,
// whose pointer then starts at channel c0 of the first pixel). See kernels/layout.h.

// y = relu(y + bias[c]) in place on a channels-last view (bias may be null; relu false: bias only).
template <typename T>
void bias_relu_fwd_nhwc(const Nchw& s, const T* bias, bool relu, T* y, cudaStream_t stream);

// y = relu(z + bias[c]) from view zs (usually dense: a convolution's own output, since cuDNN
// cannot write NHWC channel slices) into view ys of the same logical shape (usually the
// branch's channel slice of the concat output). This is the concat copy, fused into the bias
// and ReLU pass the layer runs anyway. y may equal z only when zs == ys.
template <typename T>
void bias_relu_copy_nhwc(const Nchw& zs, const T* z, const T* bias, bool relu, const Nchw& ys, T* y,
                         cudaStream_t stream);

// Backward of the above, channels-last: dz = relu ? dy * (y > 0) : dy written into view zs,
// where y and dy share view ys; db[c] += sum over n, h, w of dz (db may be null). dz may
// alias dy when zs == ys (in place). Split deterministic reduction as relu_bias_bwd: blocks
// of (pixel chunk, channel tile) write fp32 partials, then one thread per channel adds them
// in chunk order. `partial` holds relu_bias_bwd_nhwc_scratch(ys) floats. The chunk count
// scales with the current device's SM count (kernels/device_facts.h): take the scratch size
// with the device that runs the launch current (the same holds for relu_bias_bwd_scratch).
std::size_t relu_bias_bwd_nhwc_scratch(const Nchw& s);
template <typename T>
void relu_bias_bwd_nhwc(const Nchw& ys, const T* y, const T* dy, bool relu, const Nchw& zs, T* dz, T* db,
                        float* partial, cudaStream_t stream);

// y = max(x, 0); y may alias x.
template <typename T>
void relu_fwd(const Nchw& s, const T* x, T* y, cudaStream_t stream);

// dx (= or +=) dy * (y > 0); dx may alias dy (not with accumulate).
template <typename T>
void relu_bwd(const Nchw& s, const T* y, const T* dy, T* dx, bool accumulate, cudaStream_t stream);

// dz = relu ? dy * (y > 0) : dy (dz may alias dy), and db[c] += sum over n, h, w of dz
// (db may be null: the masking alone). The bias sum is split: blocks of (channel, chunk of
// images) write fp32 partial sums into `partial` (relu_bias_bwd_scratch(s) floats, owned by
// the caller), then one thread per channel adds them in chunk order. Fixed order for a
// given shape: deterministic. partial == nullptr: one block per channel (slower for big
// planes with few channels, e.g. conv1's 64 x 112 x 112).
std::size_t relu_bias_bwd_scratch(const Nchw& s);
template <typename T>
void relu_bias_bwd(const Nchw& s, const T* y, const T* dy, bool relu, T* dz, T* db, float* partial,
                   cudaStream_t stream);

}  // namespace incept::kernels

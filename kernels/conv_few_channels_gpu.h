// The first convolution of a channels-last bf16 net, whose input has few channels (conv1: 3
// channels, 7x7 taps, stride 2), as an implicit GEMM on bf16 tensor cores (mma.sync, compute
// capability 8.0 and up). A block copies the input rows under 64 output pixels into shared
// memory and loads the tensor-core operands straight from there, so no [pixels, taps] im2col
// matrix is written to device memory (466 MiB for GoogLeNet at batch 128, read back for the
// weight gradient).
//
// Forward: y = relu?(conv(x, w) + b), rounded once. Weight gradient: dz = relu ? dy * (y > 0)
// : dy, formed on the fly; each block sums dz (x) taps and dz (fp32) over its pixels, then a
// second kernel adds the blocks' sums, in block order, to dw and db (+=, one rounding each).
// The number of blocks depends on the device's SM count only, so results are bitwise the same
// from run to run on one device. A non-finite input value can reach a few more outputs than
// it would through Caffe's convolution (zero-weight padding taps read neighbouring pixels).
//
// Two implementations behind the same launchers: with an even horizontal stride and at most 4
// channels (conv1: 3 channels, stride 2) the "quad path" stores each input pixel as 4 values in
// shared memory, so every window starts 16-byte aligned and both kernels load their tensor-core
// fragments with ldmatrix (H200, batch 128: forward 0.45 -> 0.32 ms, weight gradient 0.48 ->
// 0.23 ms); other shapes take the general path, one 32-bit load per fragment register.
//
// The CPU reference is Caffe's convolution (kernels/conv_ref.h) in NCHW: tests gather the
// channels-last views into NCHW and the KRSC filters into KCRS to compare.
//
// Layouts: x, y and dy are channels-last views (kernels/layout.h; y and dy share ys). Filters
// w / dw dense [K][R][S][C] (the channels-last nets' KRSC), bias b / db [K] (may be null when
// the layer has none). Launchers never allocate or synchronize.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/shapes.h"

namespace incept::kernels {

// Whether the kernels below run this convolution on the current device: compute capability
// 8.0 and up; S*C <= 32 taps per filter row, R <= 8 rows, R*S*C <= 192 taps; stride_w * C even
// (the tap pairs the tensor cores read are 4-byte aligned); the input rows under 64 output
// pixels, (63 * stride_w + S) * C values, fit 496; an input view with dense pixels (pixel
// stride C: its rows are contiguous); K a multiple of 16; an output view whose pixel stride is
// a multiple of 8 (16-byte vector stores); shapes with 32-bit element indices.
bool conv_few_channels_supported(const Nchw& xs, const ConvGeom& g, const Nchw& ys);

// y = relu?(conv(x, w) + b). y must be 16-byte aligned (checked).
void conv_few_channels_fwd(const Nchw& xs, const __nv_bfloat16* x, const ConvGeom& g, const __nv_bfloat16* w,
                           const __nv_bfloat16* b, bool relu, const Nchw& ys, __nv_bfloat16* y,
                           cudaStream_t stream);

// Floats of scratch that conv_few_channels_bwd_filter needs (the blocks' partial sums; ~11 MB
// for conv1 on an H100). Depends on the current device's SM count: take it with the device
// that runs the launch current.
std::size_t conv_few_channels_wgrad_scratch(const Nchw& xs, const ConvGeom& g, const Nchw& ys);

// dw += sum over pixels of dz (x) taps; db[k] += sum of dz (db may be null). y and dy must be
// 16-byte aligned (checked); partial holds conv_few_channels_wgrad_scratch() floats.
void conv_few_channels_bwd_filter(const Nchw& xs, const __nv_bfloat16* x, const ConvGeom& g, const Nchw& ys,
                                  const __nv_bfloat16* y, const __nv_bfloat16* dy, bool relu,
                                  __nv_bfloat16* dw, __nv_bfloat16* db, float* partial, cudaStream_t stream);

}  // namespace incept::kernels

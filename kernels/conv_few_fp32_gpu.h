// The first convolution of a channels-last fp32 net (conv1: 3 channels, 7x7 taps, stride 2) as
// a direct convolution with fp32 FMA arithmetic only (no tensor cores, no TF32): the products
// and sums of Caffe's convolution, each output one fp32 sum over its 147 taps.
//
// Why: the im2col + cuBLAS path writes a [pixels, 152] im2col matrix (976 MB at batch 128) and
// reads it back in each pass; on an H200 it took 1.27 ms forward and 1.53 ms for the weight
// gradient at batch 128 with FMA GEMMs. Here a block copies the input rows under its output
// rows into shared memory once and every thread reads its taps from there: 0.79 and 0.91 ms.
//
// Forward: y = relu?(conv(x, w) + b). A tile is up to 4 whole output rows of one image (at most
// 224 output pixels); a block owns 64 output channels (blockIdx.y) and loops over tiles. Warp w
// computes 16 channels of one half of the tile's pixels, each lane 8 channels of 7 pixels.
// Weight gradient: dw[k][tap] += sum over pixels of dz[px][k] * x-tap of px, dz = relu ? dy *
// (y > 0) : dy, and db[k] += sum of dz, over tiles of up to 112 output pixels. Warp w sums 16
// channels for half of the taps, each lane 8 channels of 5 taps (tap 147 being a constant 1:
// the bias gradient). Each block keeps its sums in registers over its tiles and writes them
// once; a second kernel adds the blocks' sums in block order (the number of blocks depends on
// the SM count only: bitwise the same from run to run on one device).
//
// The CPU reference is Caffe's convolution (kernels/conv_ref.h) in NCHW.
//
// Layouts: x, y and dy are channels-last views (kernels/layout.h); filters w / dw dense
// [K][R][S][C] (KRSC), bias b / db [K] (null when the layer has none). Launchers never
// allocate or synchronize.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/shapes.h"

namespace incept::kernels {

// Whether the kernels below run this convolution: 3 input channels, 7x7 taps, stride 2 (any
// padding), at most 112 output columns, a multiple of 64 output channels, an input view with
// dense pixels (pixel stride 3), an output view whose pixel and image strides are multiples of
// 4 (16-byte stores), 32-bit element indices, and a device whose blocks may take ~154 KB of
// shared memory (an A100 163 KB, an H100 227 KB; not a P100, V100 or a compute capability
// 8.6 / 8.9 card, 99 KB: those keep im2col + GEMM). No tensor cores.
bool conv_few_fp32_supported(const Nchw& xs, const ConvGeom& g, const Nchw& ys);

// y = relu?(conv(x, w) + b). y must be 16-byte aligned (checked).
void conv_few_fp32_fwd(const Nchw& xs, const float* x, const ConvGeom& g, const float* w, const float* b,
                       bool relu, const Nchw& ys, float* y, cudaStream_t stream);

// Floats of scratch that conv_few_fp32_bwd_filter needs (the blocks' partial sums, ~10 MB for
// conv1 on an H200). Depends on the current device's SM count.
std::size_t conv_few_fp32_wgrad_scratch(const Nchw& xs, const ConvGeom& g, const Nchw& ys);

// dw += sum over pixels of dz (x) taps; db += sum of dz (db may be null). y and dy must be
// 16-byte aligned (checked); partial holds conv_few_fp32_wgrad_scratch() floats.
void conv_few_fp32_bwd_filter(const Nchw& xs, const float* x, const ConvGeom& g, const Nchw& ys,
                              const float* y, const float* dy, bool relu, float* dw, float* db,
                              float* partial, cudaStream_t stream);

}  // namespace incept::kernels

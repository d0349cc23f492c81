// CPU reference of the Winograd F(2x2, 3x3) convolution pieces (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016) for 3x3 filters, stride 1, pad 1, on
// channels-last fp32 views (kernels/layout.h), and the GPU kernels' formulas (winograd_gpu.h).
//
// Why F(2x2, 3x3) and not a larger tile: its transforms hold only 0, +-1 and 1/2, so every
// transform is exact but for the additions' rounding, and a 3x3 convolution takes 16 products
// per 2x2 outputs instead of 36 (2.25x fewer) with fp32's error (tests: test_winograd
// and test_gpu_kernels Winograd*). F(4x4, 3x3) needs 4x fewer, with coefficients up to
// 8 and 1/24 and several times the error (cuDNN's non-fused Winograd: ~5x the GEMM algorithms'
// gradient error on GoogLeNet, benchmarks/RESULTS.md).
//
// The output is cut into 2x2 tiles, t = (n * TH + i) * TW + j with TH = ceil(H / 2),
// TW = ceil(W / 2); tile t reads the 4x4 input patch at rows 2i - 1 .. 2i + 2 and columns
// 2j - 1 .. 2j + 2 (zero outside the image). With e = 4 * a + b indexing the 4x4 transform
// domain, the convolution is, for each e, one GEMM over channels:
//   forward        m[e][t][k] = sum_c v[e][t][c] u[e][k][c],  v = B^T d B,  u = G g G^T,
//                  y tile = A^T m A (+ bias, ReLU)
//   data gradient  the forward of dy with the flipped, transposed filters (u[e][c][k])
//   filter grad.   s[e][k][c] = sum_t z[e][t][k] v[e][t][c],  z = A dy A^T,  dw += G^T s G
// with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
// A^T = [1 1 1 0; 0 1 -1 -1]. Transformed matrices are [16][rows][channels] with rows >= tiles
// (rows past the tiles are written as zeros, so a GEMM may run over padded rows).
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace incept {

// Tiles of a 3x3/stride 1/pad 1 convolution's output (= input) of shape n x h x w.
constexpr std::int64_t winograd_tiles(int n, int h, int w) {
  return std::int64_t(n) * ((h + 1) / 2) * ((w + 1) / 2);
}

}  // namespace incept

namespace incept::ref {

// u[e][k][c] = (G g G^T)[e] with g = w[k][.][.][c] (KRSC filters [k][3][3][c]); data_grad: the
// filters of the data gradient, u[e][c][k] from g[r][s] = w[k][2 - r][2 - s][c].
void winograd_filters(int k, int c, const float* w, bool data_grad, float* u);

// v[e][t][c] = (B^T d_t B)[e] for the channels-last input view xs (c = xs.c); rows >= tiles.
void winograd_inputs(const Nchw& xs, const float* x, std::int64_t rows, float* v);

// y (= or +=) A^T m_t A (+ bias[k], then ReLU) for m [16][rows][ys.c], into the channels-last
// view ys (a concat slice allowed); outputs past the image's edge are dropped. bias may be null.
void winograd_outputs(const float* m, std::int64_t rows, const float* bias, bool relu, const Nchw& ys,
                      float* y, bool accumulate);

// z[e][t][k] = (A dy_t A^T)[e] for the 2x2 output-gradient tile dy_t of the channels-last view
// ys (k = ys.c; zero past the image's edge); rows >= tiles.
void winograd_output_grads(const Nchw& ys, const float* dy, std::int64_t rows, float* z);

// dw[k][r][s][c] += (G^T s G)[r][s] with s[e] = sum over p of s[e][p][k][c] ([16][parts][k][c]:
// partial sums over slices of the tiles, added in the order p = 0, 1, ...).
void winograd_filter_grads(int k, int c, int parts, const float* s, float* dw);

}  // namespace incept::ref

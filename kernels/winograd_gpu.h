// GPU launchers of the F(2x2, 3x3) Winograd transforms (fp32, channels-last; the algorithm, the
// layouts and the CPU reference: kernels/winograd_ref.h). The GEMMs between them are cuBLAS's
// (engine/winograd_conv.h). Launchers never allocate or synchronize.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/shapes.h"

namespace incept::kernels {

// u [16][k][c] (data_grad: [16][c][k], the data gradient's flipped filters) from KRSC w [k][3][3][c]
void winograd_filters(int k, int c, const float* w, bool data_grad, float* u, cudaStream_t stream);
// v [16][rows][xs.c] from the channels-last view xs (rows >= winograd_tiles; the rest zero)
void winograd_inputs(const Nchw& xs, const float* x, std::int64_t rows, float* v, cudaStream_t stream);
// y (= or +=) A^T m A (+ bias, ReLU) into the channels-last view ys, m [16][rows][ys.c]
void winograd_outputs(const float* m, std::int64_t rows, const float* bias, bool relu, const Nchw& ys,
                      float* y, bool accumulate, cudaStream_t stream);
// z [16][rows][ys.c] = A dy A^T per 2x2 tile of the channels-last output gradient view ys
void winograd_output_grads(const Nchw& ys, const float* dy, std::int64_t rows, float* z, cudaStream_t stream);
// dw [k][3][3][c] += G^T (sum_p s[e][p]) G, s [16][parts][k][c]
void winograd_filter_grads(int k, int c, int parts, const float* s, float* dw, cudaStream_t stream);

}  // namespace incept::kernels

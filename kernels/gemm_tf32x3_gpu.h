// fp32 GEMM at fp32 accuracy on TF32 tensor cores ("3xTF32"), for the fp32 step's convolution
// GEMMs. Each fp32 operand x is split in registers into big = x rounded to TF32 and
// small = x - big (exact); the product is A B ~ As Bb + Ab Bs + Ab Bb (the dropped As Bs and the
// tensor core's truncation of the small parts to TF32 are ~2^-21 of |A| |B|, fp32's own
// rounding is 2^-24; an inf operand gives NaN). Tensor cores add their products with truncation, which biases
// long sums: each k-tile (32 values of k) is summed on the tensor cores from zero and then added to the
// result with an fp32 FADD (round to nearest), so a weight gradient over k = 400,000 pixels
// keeps FMA fp32's error instead of the 40x larger one measured with cuBLAS's TF32 GEMMs
// (benchmarks/RESULTS.md, session 11).
//
// Semantics are cuBLAS's (column-major, op N/T), with a batch of strided problems:
//   C_z = act(alpha * op(A_z) op(B_z) + beta * C_z + bias[i]),  op(A)[m, k], op(B)[k, n], C[m, n],
// z < batch, with the optional bias per row i of C (a convolution's output channel) and ReLU as
// act when relu (the epilogue cuBLASLt's BIAS / RELU_BIAS would run). beta == 0 never reads C. Needs compute
// capability 8.0 or newer; tf32x3_supported() says whether a problem fits the kernel (the caller keeps cuBLAS
// for the rest), so a P100 build (CUDA 12, sm_60) compiles and always takes the cuBLAS path.
#pragma once

#include <cuda_runtime.h>

namespace incept::kernels {

// A channels-last convolution's im2col rows, read in place (implicit GEMM): row j is output
// pixel j = (image, oy, ox), column l = (tap row, tap column, channel) in im2col_nhwc's order,
// x at (oy * sh - ph + tap row, ox * sw - pw + tap column), zero in the padding and in columns
// past kh * kw * c (rows padded to an aligned length). With c, the pixel and image strides
// multiples of 4 and x 16-byte aligned, a 16-byte copy moves 4 channels of a tap; otherwise
// (conv1's 3 channels) every column is its own 4-byte copy, which the net found slower than
// building conv1's rows, so it keeps them there. Used as GemmProblem::rows.
struct ConvRows {
  const float* x = nullptr;  // null: B is a matrix
  int h = 0, w = 0, c = 0, pixel_stride = 0;
  long long image_stride = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, oh = 0, ow = 0;
};

// The CTA tile (rows x columns of C, as launched): two wide ones and four for a narrow side
// (conv1's 152 taps, the 16-48 channels of the inception modules' 5x5 branch).
enum class Tf32x3Tile { kAuto, k64x128, k128x128, k32x128, k16x128, k128x32, k64x64 };

struct GemmProblem {
  bool trans_a = false, trans_b = false;  // cuBLAS's CUBLAS_OP_T for A, B
  int m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int lda = 0;
  long long stride_a = 0;
  const float* b = nullptr;
  int ldb = 0;
  long long stride_b = 0;
  float* c = nullptr;
  int ldc = 0;
  long long stride_c = 0;
  int batch = 1;
  float alpha = 1.f, beta = 0.f;
  const float* bias = nullptr;  // [m] or null
  bool relu = false;
  // C stored row-major: element (i, j) at c[i * ldc + j]. The launcher runs C^T = op(B)^T op(A)^T
  // this way where the transposed shape fills its tiles better (weight gradients).
  bool c_row_major = false;
  // rows.x set: these im2col rows, read in place, are B (op N: B(l, j) = row j's column l; a
  // forward; k = kh * kw * c, n = pixels, batch 1) or, with rows_are_a, A (op N: A(i, l) = row
  // l's column i; a weight gradient: m = kh * kw * c, batch entry z covers pixels z * k + [0, k),
  // B op T).
  ConvRows rows;
  bool rows_are_a = false;
  // kAuto: the launcher's choice (tf32x3_tile); otherwise this tile (tests and benchmarks)
  Tf32x3Tile tile = Tf32x3Tile::kAuto;
};

// Whether the kernel runs this problem on the current device: compute capability >= 8.0,
// operands 16-byte aligned with leading dimensions and batch strides multiples of 4, the
// contiguous extent of each operand (m or k for A, k or n for B) a multiple of 4, and m, n >= 16.
bool tf32x3_supported(const GemmProblem& p);
// Whether it is also expected to beat strict cuBLAS (H200, sessions 12-13: 1.2-1.35x on the
// step's wide GEMMs, 1.6-2.2x on the 5x5 branches' narrow ones): supported, k >= 64 (a k of
// 16-48 leaves the pipeline empty), and the launched tiles (the best tile, in the better of C and
// C^T) at least 45 % as productive as whole 64 x 128 tiles on every SM: their share of C's area,
// times the tile's measured speed, times the share of SMs the grid fills (an inner product at
// batch 128 has 16 CTAs).
bool tf32x3_preferred(const GemmProblem& p);
// The tile the launcher runs p with, and whether it runs C^T (row-major C) instead of C.
Tf32x3Tile tf32x3_tile(const GemmProblem& p, bool* transposed = nullptr);
// Runs it (throws incept::Error when !tf32x3_supported(p)). No allocation, no synchronization.
void gemm_tf32x3(const GemmProblem& p, cudaStream_t stream);

// CPU reference of the kernel's arithmetic (one problem, batch ignored): the three products of
// the split operands in double, with the small parts truncated to TF32 as the tensor cores
// read them. The GPU result differs from it only by fp32 accumulation.
void gemm_tf32x3_ref(const GemmProblem& p, const float* a, const float* b, double* c);

}  // namespace incept::kernels

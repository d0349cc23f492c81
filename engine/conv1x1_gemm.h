// A 1x1, stride-1, unpadded convolution on NCHW activations as cuBLAS GEMMs, one per image
// in one strided-batched call: per image n, with HW = H * W,
//   y_n[K, HW] = W[K, C] x_n[C, HW]           (forward)
//   dx_n[C, HW] (+)= W^T dy_n                 (backward data)
//   dW[K, C] += sum_n dy_n x_n^T              (backward filter: a batched GEMM into per-image
//                                              partial products, then a fixed-order sum)
// Why: in strict fp32 (FMA math) cuDNN 9.19 runs GoogLeNet's 1x1 layers at 12-15 TFLOP/s on
// an H100, a third of what cuBLAS's pedantic SGEMM reaches on the same products.
//
// x, dx: NCHW views [N, C, H, W] (batch stride nstride()), y, dy: NCHW views [N, K, H, W]
// (may be channel slices of a concat output), W, dW: [K, C] dense, all of the dtype.
// `partial`: caller-owned scratch of partial_elems() elements of the dtype.
// Gradient contract: dW accumulates; dx is overwritten unless accumulate. Nothing here
// allocates or synchronizes; the handle's stream and workspace are the caller's.
#pragma once

#include <cublas_v2.h>

#include <cstddef>

#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept {

class Conv1x1Gemm {
 public:
  Conv1x1Gemm(const Nchw& x, const Nchw& y, kernels::DType dtype, bool allow_tf32);

  std::size_t partial_elems() const;
  void forward(cublasHandle_t h, const void* x, const void* w, void* y) const;
  void backward_data(cublasHandle_t h, const void* w, const void* dy, void* dx, bool accumulate) const;
  void backward_filter(cublasHandle_t h, const void* x, const void* dy, void* dw, void* partial) const;

 private:
  void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* a,
            int lda, long long stride_a, const void* b, int ldb, long long stride_b, float beta, void* c,
            int ldc, long long stride_c) const;

  Nchw x_, y_;
  kernels::DType dtype_;
  bool allow_tf32_;
};

}  // namespace incept

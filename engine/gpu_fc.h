// Inner product (Caffe's InnerProduct, transpose = false) on cuBLAS: y[N, M] = x[N, K] W[M, K]^T
// (+ bias[M] and ReLU through kernels/bias_relu_gpu.h). Row-major x, y, W are seen by cuBLAS
// (column-major) as their transposes, so every call is one cublasGemmEx without copies.
//
// dtype fp32: fp32 GEMM (TF32 only when asked; with tf32x3, incept's 3xTF32 tensor-core kernel,
// kernels/gemm_tf32x3_gpu.h, at fp32 accuracy, wherever it takes the shape); bf16: bf16 operands, fp32
// accumulation (CUBLAS_COMPUTE_32F). x, y, dx, dy are dense [N, K] / [N, M] of the dtype; W, dW [M, K] and
// bias, db [M] of the dtype. The caller sets the handle's stream and workspace
// (cublasSetWorkspace), so nothing here allocates or synchronizes.
// Gradient contract: dW and db accumulate; dx is overwritten unless accumulate.
//
// Row strides (FcShape::ldx, ldy) let the same class run a 1x1 stride-1 convolution on
// channels-last activations: rows are the N*H*W pixels, x's row stride is its pixel stride and
// y's may be the pixel stride of a concat output (the branch writes its channel slice directly).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstddef>

#include "engine/owners.h"
#include "kernels/dtype_gpu.h"
#include "kernels/gemm_tf32x3_gpu.h"

namespace incept {

using CublasLtHandle = UniqueHandle<cublasLtHandle_t, cublasLtDestroy>;
using LtMatmulDesc = UniqueHandle<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using LtLayout = UniqueHandle<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
CublasLtHandle make_cublas_lt();

// Operand type and compute type of every GEMM of a dtype: fp32 operands with pedantic fp32
// compute (TF32 only when allowed), or bf16 operands with fp32 accumulation.
struct CublasTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
};
CublasTypes cublas_types(kernels::DType dtype, bool allow_tf32);

struct FcShape {
  int n = 0;    // batch
  int k = 0;    // input features (C*H*W of the input)
  int m = 0;    // num_output
  int ldx = 0;  // elements between rows of x and dx (0: k, dense)
  int ldy = 0;  // elements between rows of y and dy (0: m, dense)
  int lx() const { return ldx ? ldx : k; }
  int ly() const { return ldy ? ldy : m; }
};

class GpuFc {
 public:
  static constexpr int kTf32x3WgradRows = 8192;  // most rows per weight-gradient slice with tf32x3

  // Reads the current device's SM count (the weight-gradient chunking below): construct it
  // with the device that will run it current.
  // tf32x3 (fp32, not with allow_tf32): GEMMs on the 3xTF32 kernel where it is expected to be
  // faster (kernels::tf32x3_preferred), or wherever it takes the shape with tf32x3_all_shapes
  // (tests: small nets exercise it at every layer).
  GpuFc(const FcShape& s, kernels::DType dtype, bool allow_tf32 = false, bool tf32x3 = false,
        bool tf32x3_all_shapes = false);

  // y = x W^T (+ bias) (then ReLU when relu).
  void forward(cublasHandle_t h, const void* x, const void* w, const void* bias, bool relu, void* y) const;
  // dx (= or +=) dy W
  void backward_data(cublasHandle_t h, const void* dy, const void* w, void* dx,
                     bool accumulate = false) const;
  // dW += dy^T x ; db += sum_n dy (db may be null; needs dense dy). With many rows and a small
  // dW (a convolution's weight gradient over all N*H*W pixels) one GEMM has too few output
  // tiles to fill the GPU: given `partial` (wgrad_partial_elems() fp32), the rows are split
  // into wgrad_chunks() slices, one strided-batched GEMM writes a product per slice, and a
  // fixed-order sum adds them to dW (deterministic). Without it: one GEMM.
  void backward_filter(cublasHandle_t h, const void* x, const void* dy, void* dw, void* db,
                       float* partial = nullptr) const;
  int wgrad_chunks() const { return chunks_; }

  // y = act(x W^T + bias) in one cuBLASLt call with the bias (and ReLU) in the GEMM's epilogue
  // (with tf32x3: one 3xTF32 kernel with the same epilogue),
  // saving the separate pass over y. prepare_fused_forward picks the algorithm (cuBLASLt's
  // heuristic within workspace_bytes) and returns false where cuBLASLt has none for this shape
  // and precision (then use forward + the bias/ReLU kernel). y may be strided (ldy).
  // `bias` (device, [M]) is fixed here: a net's parameters never move.
  bool prepare_fused_forward(cublasLtHandle_t lt, const void* bias, bool relu, std::size_t workspace_bytes);
  void forward_fused(cublasLtHandle_t lt, const void* x, const void* w, void* y, void* workspace,
                     std::size_t workspace_bytes, cudaStream_t stream) const;
  bool fused_forward_ready() const { return lt_ready_; }
  // y = x W^T with x the im2col rows of a channels-last convolution read in place by the 3xTF32
  // kernel (kernels::ConvRows; rows.x and the shape give s_.n rows of s_.k), with the fused
  // bias/ReLU when `fused` (prepare_fused_forward succeeded). Returns false, doing nothing, where
  // the kernel does not run it (not tf32x3, or a shape it does not take): then im2col + forward.
  bool forward_rows(const kernels::ConvRows& rows, const void* w, void* y, bool fused,
                    cudaStream_t stream) const;
  // backward_filter (no bias) with x those rows read in place, sliced as backward_filter slices
  // them. Returns false, doing nothing, where the kernel does not run it (then im2col first).
  bool backward_filter_rows(cublasHandle_t h, const kernels::ConvRows& rows, const void* dy, void* dw,
                            float* partial) const;
  // Whether forward_rows (and, with weight_gradient, backward_filter_rows with the slices'
  // partial buffer) will run on rows of this shape (rows.x is ignored): the shape check a plan
  // makes before it drops a layer's row buffer.
  bool takes_rows(kernels::ConvRows rows, bool weight_gradient) const;
  std::size_t wgrad_partial_elems() const { return chunks_ > 1 ? std::size_t(chunks_) * s_.m * s_.k : 0; }

  const FcShape& shape() const { return s_; }
  bool tf32x3() const { return tf32x3_; }

 private:
  void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* a,
            int lda, const void* b, int ldb, float beta, void* c, int ldc) const;
  // The 3xTF32 kernel on the handle's stream when tf32x3_ and it takes the problem; false: the
  // caller runs cuBLAS.
  kernels::GemmProblem forward_problem(const void* x, const void* w, void* y) const;
  kernels::GemmProblem wgrad_rows_problem(const kernels::ConvRows& rows, const void* dy, void* dw,
                                          float* partial) const;
  bool takes(const kernels::GemmProblem& p) const;  // the 3xTF32 kernel runs p
  bool gemm_tf32x3(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                   const void* a, int lda, long long stride_a, const void* b, int ldb, long long stride_b,
                   float beta, void* c, int ldc, long long stride_c, int batch) const;

  FcShape s_;
  kernels::DType dtype_;
  bool allow_tf32_;
  bool tf32x3_;
  bool tf32x3_all_;
  int chunks_ = 1;
  LtMatmulDesc lt_desc_;
  LtLayout lt_w_, lt_x_, lt_y_;
  cublasLtMatmulAlgo_t lt_algo_{};
  bool lt_ready_ = false;
  bool tf32x3_fused_ = false;  // forward_fused runs the 3xTF32 kernel with its bias/ReLU epilogue
  const float* fused_bias_ = nullptr;
  bool fused_relu_ = false;
};

}  // namespace incept

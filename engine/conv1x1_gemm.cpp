// 1x1 convolutions on NCHW as strided-batched cuBLAS GEMMs (conv1x1_gemm.h).
#include "engine/conv1x1_gemm.h"

#include "engine/check.h"
#include "engine/gpu_fc.h"
#include "kernels/elementwise.h"

namespace incept {

using kernels::DType;

Conv1x1Gemm::Conv1x1Gemm(const Nchw& x, const Nchw& y, DType dtype, bool allow_tf32)
    : x_(x), y_(y), dtype_(dtype), allow_tf32_(allow_tf32) {
  if (x.n != y.n || x.h != y.h || x.w != y.w) throw Error("Conv1x1Gemm: x and y differ in N, H or W");
}

std::size_t Conv1x1Gemm::partial_elems() const {
  return std::size_t(x_.n) * x_.c * y_.c;
}

void Conv1x1Gemm::gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                       const void* a, int lda, long long stride_a, const void* b, int ldb, long long stride_b,
                       float beta, void* c, int ldc, long long stride_c) const {
  const float alpha = 1.f;
  const auto [t, ct] = cublas_types(dtype_, allow_tf32_);
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, a, t, lda, stride_a, b, t, ldb,
                                          stride_b, &beta, c, t, ldc, stride_c, x_.n, ct,
                                          CUBLAS_GEMM_DEFAULT));
}

// Column-major views: x_n is (HW x C) with ld HW, y_n (HW x K) with ld HW, W row-major [K, C]
// is (C x K) with ld C.
void Conv1x1Gemm::forward(cublasHandle_t h, const void* x, const void* w, void* y) const {
  const int hw = x_.h * x_.w;
  // y_n (HW x K) = x_n (HW x C) * W^T (C x K)
  gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, hw, y_.c, x_.c, x, hw, x_.nstride(), w, x_.c, 0, 0.f, y, hw,
       y_.nstride());
}

void Conv1x1Gemm::backward_data(cublasHandle_t h, const void* w, const void* dy, void* dx,
                                bool accumulate) const {
  const int hw = x_.h * x_.w;
  // dx_n (HW x C) = dy_n (HW x K) * W (K x C)
  gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, hw, x_.c, y_.c, dy, hw, y_.nstride(), w, x_.c, 0, accumulate ? 1.f : 0.f,
       dx, hw, x_.nstride());
}

void Conv1x1Gemm::backward_filter(cublasHandle_t h, const void* x, const void* dy, void* dw,
                                  void* partial) const {
  const int hw = x_.h * x_.w;
  const long long per = static_cast<long long>(x_.c) * y_.c;
  // partial_n (C x K) = x_n^T (C x HW) * dy_n (HW x K), i.e. row-major [K, C] per image
  gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, x_.c, y_.c, hw, x, hw, x_.nstride(), dy, hw, y_.nstride(), 0.f, partial,
       x_.c, per);
  cudaStream_t s = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &s));
  if (dtype_ == DType::kF32)
    kernels::sum_rows_add(x_.n, per, static_cast<const float*>(partial), static_cast<float*>(dw), s);
  else
    kernels::sum_rows_add(x_.n, per, static_cast<const __nv_bfloat16*>(partial),
                          static_cast<__nv_bfloat16*>(dw), s);
}

}  // namespace incept

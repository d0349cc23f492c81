// Inner product on cuBLAS (gpu_fc.h).
#include "engine/gpu_fc.h"

#include <algorithm>
#include <cstdint>

#include "engine/check.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_tf32x3_gpu.h"

namespace incept {

using kernels::DType;

CublasLtHandle make_cublas_lt() {
  cublasLtHandle_t h = nullptr;
  CUBLAS_CHECK(cublasLtCreate(&h));
  return CublasLtHandle(h);
}

CublasTypes cublas_types(DType dtype, bool allow_tf32) {
  if (dtype == DType::kBF16) return {CUDA_R_16BF, CUBLAS_COMPUTE_32F};
  return {CUDA_R_32F, allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC};
}

bool GpuFc::prepare_fused_forward(cublasLtHandle_t lt, const void* bias, bool relu,
                                  std::size_t workspace_bytes) {
  lt_ready_ = false;
  tf32x3_fused_ = false;
  if (tf32x3_) {  // the 3xTF32 kernel's own epilogue, where it takes the forward GEMM
    kernels::GemmProblem p = forward_problem(nullptr, nullptr, nullptr);
    p.a = p.b = reinterpret_cast<const float*>(bias);  // pointers are checked per call
    if (tf32x3_all_ ? kernels::tf32x3_supported(p) : kernels::tf32x3_preferred(p)) {
      fused_bias_ = static_cast<const float*>(bias);
      fused_relu_ = relu;
      tf32x3_fused_ = lt_ready_ = true;
      return true;
    }
  }
  const auto [t, ct] = cublas_types(dtype_, allow_tf32_);
  cublasLtMatmulDesc_t d = nullptr;
  if (cublasLtMatmulDescCreate(&d, ct, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return false;
  lt_desc_ = LtMatmulDesc(d);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const cublasLtEpilogue_t epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof t));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  // column-major: y'[M, N] = (W'[K, M])^T x'[K, N] (+ bias[M])
  cublasLtMatrixLayout_t lw = nullptr, lx = nullptr, ly = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lw, t, s_.k, s_.m, s_.k));
  lt_w_ = LtLayout(lw);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lx, t, s_.k, s_.n, s_.lx()));
  lt_x_ = LtLayout(lx);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ly, t, s_.m, s_.n, s_.ly()));
  lt_y_ = LtLayout(ly);
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspace_bytes, sizeof workspace_bytes));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, d, lw, lx, ly, ly, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) return false;
  lt_algo_ = res.algo;
  lt_ready_ = true;
  return true;
}

void GpuFc::forward_fused(cublasLtHandle_t lt, const void* x, const void* w, void* y, void* workspace,
                          std::size_t workspace_bytes, cudaStream_t stream) const {
  if (!lt_ready_) throw Error("GpuFc::forward_fused: not prepared");
  if (tf32x3_fused_) {
    kernels::GemmProblem p = forward_problem(x, w, y);
    p.bias = fused_bias_;
    p.relu = fused_relu_;
    kernels::gemm_tf32x3(p, stream);  // throws if x, w or y are not 16-byte aligned
    return;
  }

  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(lt, lt_desc_, &alpha, w, lt_w_, x, lt_x_, &beta, y, lt_y_, y, lt_y_, &lt_algo_,
                              workspace, workspace_bytes, stream));
}

GpuFc::GpuFc(const FcShape& s, DType dtype, bool allow_tf32, bool tf32x3, bool tf32x3_all_shapes)
    : s_(s),
      dtype_(dtype),
      allow_tf32_(allow_tf32),
      tf32x3_(tf32x3 && dtype == DType::kF32 && !allow_tf32),
      tf32x3_all_(tf32x3_all_shapes) {
  // Enough weight-gradient GEMMs for ~2 waves of 128x128 output tiles on the current device
  // (2 x 132 SMs on an H100), each over at least 512 rows, with a chunk count that divides
  // the rows. The chunking fixes the order of the partial sums: deterministic per device.
  const long long tiles = ((s_.k + 127) / 128) * ((s_.m + 127) / 128);
  const long long target = std::max(1LL, 2LL * kernels::sm_count() / tiles);
  while (chunks_ * 2 <= target && s_.n % (chunks_ * 2) == 0 && s_.n / (chunks_ * 2) >= 512) chunks_ *= 2;
  // The 3xTF32 kernel adds each 32-row k-tile to its result in fp32: over at most 8,192 rows
  // per slice (256 additions), the slices then summed in fixed order, a weight gradient over
  // 401,408 pixels keeps strict fp32's error (GpuKernels.Tf32x3WeightGradientKeepsFp32Accuracy).
  if (tf32x3_)
    while (s_.n / chunks_ > kTf32x3WgradRows && s_.n % (chunks_ * 2) == 0) chunks_ *= 2;
}

kernels::GemmProblem GpuFc::forward_problem(const void* x, const void* w, void* y) const {
  // column-major: y'[M, N] = (W'[K, M])^T x'[K, N], as forward()
  kernels::GemmProblem p;
  p.trans_a = true, p.m = s_.m, p.n = s_.n, p.k = s_.k;
  p.a = static_cast<const float*>(w), p.lda = s_.k;
  p.b = static_cast<const float*>(x), p.ldb = s_.lx();
  p.c = static_cast<float*>(y), p.ldc = s_.ly();
  return p;
}

bool GpuFc::forward_rows(const kernels::ConvRows& rows, const void* w, void* y, bool fused,
                         cudaStream_t stream) const {
  if (!tf32x3_) return false;
  kernels::GemmProblem p = forward_problem(rows.x, w, y);
  p.rows = rows;
  if (fused) {
    if (!tf32x3_fused_) return false;
    p.bias = fused_bias_;
    p.relu = fused_relu_;
  }
  if (!takes(p)) return false;
  kernels::gemm_tf32x3(p, stream);
  return true;
}

kernels::GemmProblem GpuFc::wgrad_rows_problem(const kernels::ConvRows& rows, const void* dy, void* dw,
                                               float* partial) const {
  // column-major: dW'[K, M] (+)= x'[K, rows] (dy'[M, rows])^T per slice, x' read in place
  const bool sliced = chunks_ > 1 && partial;
  kernels::GemmProblem p;
  p.trans_b = true, p.m = s_.k, p.n = s_.m, p.k = sliced ? s_.n / chunks_ : s_.n,
  p.batch = sliced ? chunks_ : 1;
  p.rows = rows, p.rows_are_a = true;
  p.b = static_cast<const float*>(dy), p.ldb = s_.ly(), p.stride_b = static_cast<long long>(p.k) * s_.ly();
  p.c = sliced ? partial : static_cast<float*>(dw), p.ldc = s_.k,
  p.stride_c = static_cast<long long>(s_.k) * s_.m;
  p.beta = sliced ? 0.f : 1.f;
  return p;
}

bool GpuFc::takes(const kernels::GemmProblem& p) const {
  return tf32x3_ && (tf32x3_all_ ? kernels::tf32x3_supported(p) : kernels::tf32x3_preferred(p));
}

bool GpuFc::takes_rows(kernels::ConvRows rows, bool weight_gradient) const {
  // shapes only: any 256-byte aligned address stands for the buffers (the arenas' alignment)
  float* any = reinterpret_cast<float*>(std::uintptr_t(256));
  rows.x = any;
  kernels::GemmProblem f = forward_problem(any, any, any);
  f.rows = rows;
  return takes(f) && (!weight_gradient || takes(wgrad_rows_problem(rows, any, any, any)));
}

bool GpuFc::backward_filter_rows(cublasHandle_t h, const kernels::ConvRows& rows, const void* dy, void* dw,
                                 float* partial) const {
  const kernels::GemmProblem p = wgrad_rows_problem(rows, dy, dw, partial);
  if (!takes(p)) return false;
  cudaStream_t st = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &st));
  kernels::gemm_tf32x3(p, st);
  if (p.batch > 1) kernels::sum_rows_add(p.batch, p.stride_c, partial, static_cast<float*>(dw), st);
  return true;
}

bool GpuFc::gemm_tf32x3(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                        const void* a, int lda, long long stride_a, const void* b, int ldb,
                        long long stride_b, float beta, void* c, int ldc, long long stride_c,
                        int batch) const {
  if (!tf32x3_) return false;
  kernels::GemmProblem p;
  p.trans_a = ta == CUBLAS_OP_T, p.trans_b = tb == CUBLAS_OP_T, p.m = m, p.n = n, p.k = k, p.batch = batch;
  p.a = static_cast<const float*>(a), p.lda = lda, p.stride_a = stride_a;
  p.b = static_cast<const float*>(b), p.ldb = ldb, p.stride_b = stride_b;
  p.c = static_cast<float*>(c), p.ldc = ldc, p.stride_c = stride_c, p.beta = beta;
  if (!(tf32x3_all_ ? kernels::tf32x3_supported(p) : kernels::tf32x3_preferred(p))) return false;
  cudaStream_t st = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &st));
  kernels::gemm_tf32x3(p, st);
  return true;
}

void GpuFc::gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const void* a, int lda, const void* b, int ldb, float beta, void* c, int ldc) const {
  if (gemm_tf32x3(h, ta, tb, m, n, k, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1)) return;
  const float alpha = 1.f;
  const auto [t, ct] = cublas_types(dtype_, allow_tf32_);
  CUBLAS_CHECK(cublasGemmEx(h, ta, tb, m, n, k, &alpha, a, t, lda, b, t, ldb, &beta, c, t, ldc, ct,
                            CUBLAS_GEMM_DEFAULT));
}

void GpuFc::forward(cublasHandle_t h, const void* x, const void* w, const void* bias, bool relu,
                    void* y) const {
  // column-major: y'[M, N] = (W'[K, M])^T x'[K, N]
  gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, s_.m, s_.n, s_.k, w, s_.k, x, s_.lx(), 0.f, y, s_.ly());
  if (bias == nullptr && !relu) return;
  if (s_.ly() != s_.m)
    throw Error("GpuFc::forward: bias/ReLU on a strided output (use the channels-last kernels)");
  cudaStream_t st = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &st));
  const Nchw ys{s_.n, s_.m, 1, 1};
  if (dtype_ == DType::kF32)
    kernels::bias_relu_fwd(ys, static_cast<const float*>(bias), relu, static_cast<float*>(y), st);
  else
    kernels::bias_relu_fwd(ys, static_cast<const __nv_bfloat16*>(bias), relu, static_cast<__nv_bfloat16*>(y),
                           st);
}

void GpuFc::backward_data(cublasHandle_t h, const void* dy, const void* w, void* dx, bool accumulate) const {
  // column-major: dx'[K, N] = W'[K, M] dy'[M, N]
  gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, s_.k, s_.n, s_.m, w, s_.k, dy, s_.ly(), accumulate ? 1.f : 0.f, dx,
       s_.lx());
}

void GpuFc::backward_filter(cublasHandle_t h, const void* x, const void* dy, void* dw, void* db,
                            float* partial) const {
  if (chunks_ > 1 && partial) {
    // partial_j'[K, M] = x_j'[K, rows_j] (dy_j'[M, rows_j])^T per slice j, fp32, then summed.
    const int rows = s_.n / chunks_;
    const float alpha = 1.f, beta = 0.f;
    const auto [t, ct] = cublas_types(dtype_, allow_tf32_);
    const long long sx = static_cast<long long>(rows) * s_.lx(), sy = static_cast<long long>(rows) * s_.ly(),
                    sp = static_cast<long long>(s_.k) * s_.m;
    if (!gemm_tf32x3(h, CUBLAS_OP_N, CUBLAS_OP_T, s_.k, s_.m, rows, x, s_.lx(), sx, dy, s_.ly(), sy, beta,
                     partial, s_.k, sp, chunks_))
      CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, s_.k, s_.m, rows, &alpha, x, t,
                                              s_.lx(), sx, dy, t, s_.ly(), sy, &beta, partial, CUDA_R_32F,
                                              s_.k, sp, chunks_, ct, CUBLAS_GEMM_DEFAULT));
    cudaStream_t st = nullptr;
    CUBLAS_CHECK(cublasGetStream(h, &st));
    const long long cols = static_cast<long long>(s_.k) * s_.m;
    if (dtype_ == DType::kF32)
      kernels::sum_rows_add(chunks_, cols, partial, static_cast<float*>(dw), st);
    else
      kernels::sum_rows_add(chunks_, cols, partial, static_cast<__nv_bfloat16*>(dw), st);
  } else {
    // column-major: dW'[K, M] += x'[K, N] (dy'[M, N])^T
    gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, s_.k, s_.m, s_.n, x, s_.lx(), dy, s_.ly(), 1.f, dw, s_.k);
  }
  if (db == nullptr) return;
  if (s_.ly() != s_.m) throw Error("GpuFc::backward_filter: bias gradient of a strided dy");
  cudaStream_t st = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &st));
  const Nchw ys{s_.n, s_.m, 1, 1};
  if (dtype_ == DType::kF32) {
    auto* g = static_cast<float*>(const_cast<void*>(dy));
    kernels::relu_bias_bwd<float>(ys, nullptr, g, false, g, static_cast<float*>(db), nullptr, st);
  } else {
    auto* g = static_cast<__nv_bfloat16*>(const_cast<void*>(dy));
    kernels::relu_bias_bwd<__nv_bfloat16>(ys, nullptr, g, false, g, static_cast<__nv_bfloat16*>(db), nullptr,
                                          st);
  }
}

}  // namespace incept

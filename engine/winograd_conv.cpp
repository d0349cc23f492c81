// F(2x2, 3x3) Winograd convolution on cuBLAS (winograd_conv.h).
#include "engine/winograd_conv.h"

#include <algorithm>

#include "engine/check.h"
#include "kernels/winograd_gpu.h"
#include "kernels/winograd_ref.h"

namespace incept {

namespace {
constexpr int kTransformed = 16;  // 4 x 4 transform-domain entries per tile
std::size_t align256(std::size_t b) {
  return (b + 255) / 256 * 256;
}
cudaStream_t stream_of(cublasHandle_t h) {
  cudaStream_t s = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &s));
  return s;
}
}  // namespace

bool WinogradConv::supports(const Nchw& x, const ConvGeom& g) {
  return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 1 &&
         g.pad_w == 1 && x.c > 0 && g.num_output > 0;
}

WinogradConv::WinogradConv(const Nchw& xs, const Nchw& ys, int sms, int parts)
    : xs_(xs), ys_(ys), c_(xs.c), k_(ys.c), tiles_(winograd_tiles(xs.n, xs.h, xs.w)), parts_(parts) {
  if (xs.n != ys.n || xs.h != ys.h || xs.w != ys.w) throw Error("WinogradConv: x and y differ in N, H or W");
  if (parts_ <= 0) {
    // The weight gradient is 16 GEMMs of a k x c output, each summing over every tile: split
    // the tiles into parts so that 16 x parts GEMMs give the GPU about two waves of 128 x 64
    // tiles (a fixed-order sum adds the parts), keeping at least 256 tiles per part.
    const double tiles_per_gemm = std::max(1.0, double(k_) * c_ / (128.0 * 64.0));
    // (one or four waves measured 0.15 ms a step slower, session 17)
    const std::int64_t want = std::int64_t(2.0 * std::max(sms, 1) / (kTransformed * tiles_per_gemm) + 0.999);
    parts_ = int(std::clamp<std::int64_t>(want, 1, std::clamp<std::int64_t>(tiles_ / 256, 1, 32)));
  }
  rows_ = (tiles_ + parts_ - 1) / parts_ * parts_;
}

std::size_t WinogradConv::workspace_bytes() const {
  const std::size_t f = sizeof(float), m = std::size_t(kTransformed);
  return align256(m * parts_ * k_ * c_ * f) + align256(m * k_ * c_ * f) + align256(m * rows_ * c_ * f) +
         align256(m * rows_ * k_ * f);
}

WinogradConv::Pieces WinogradConv::pieces(void* ws) const {
  const std::size_t f = sizeof(float), m = std::size_t(kTransformed);
  char* p = static_cast<char*>(ws);
  Pieces r;
  r.s = reinterpret_cast<float*>(p);  // first: at the same place for every chunk's convolution
  p += align256(m * parts_ * k_ * c_ * f);
  r.u = reinterpret_cast<float*>(p);
  p += align256(m * k_ * c_ * f);
  r.cside = reinterpret_cast<float*>(p);
  p += align256(m * rows_ * c_ * f);
  r.kside = reinterpret_cast<float*>(p);
  return r;
}

void WinogradConv::gemms(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const float* a, int lda, long long sa, const float* b, int ldb, long long sb,
                         float* c, int ldc, long long sc, int batch, float beta) const {
  const float alpha = 1.f;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, a, CUDA_R_32F, lda, sa, b, CUDA_R_32F,
                                          ldb, sb, &beta, c, CUDA_R_32F, ldc, sc, batch,
                                          CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
}

// Column-major views of the row-major matrices: v [rows][c] is (c x rows) with ld c, u [k][c]
// is (c x k) with ld c, m [rows][k] is (k x rows) with ld k.
void WinogradConv::forward(cublasHandle_t h, const float* x, const float* w, const float* bias, bool relu,
                           float* y, void* ws, bool filters_ready) const {
  const cudaStream_t s = stream_of(h);
  const Pieces p = pieces(ws);
  if (!filters_ready) kernels::winograd_filters(k_, c_, w, false, p.u, s);
  kernels::winograd_inputs(xs_, x, rows_, p.cside, s);
  // m[e] (k x rows) = u[e]^T (k x c) v[e] (c x rows)
  gemms(h, CUBLAS_OP_T, CUBLAS_OP_N, k_, int(rows_), c_, p.u, c_, (long long)k_ * c_, p.cside, c_, rows_ * c_,
        p.kside, k_, rows_ * k_, kTransformed, 0.f);
  kernels::winograd_outputs(p.kside, rows_, bias, relu, ys_, y, false, s);
}

void WinogradConv::backward_data(cublasHandle_t h, const float* dy, const float* w, float* dx,
                                 bool accumulate, void* ws, bool filters_ready) const {
  const cudaStream_t s = stream_of(h);
  const Pieces p = pieces(ws);
  if (!filters_ready) kernels::winograd_filters(k_, c_, w, true, p.u, s);  // [16][c][k]
  kernels::winograd_inputs(ys_, dy, rows_, p.kside, s);
  // m'[e] (c x rows) = u'[e]^T (c x k) v'[e] (k x rows)
  gemms(h, CUBLAS_OP_T, CUBLAS_OP_N, c_, int(rows_), k_, p.u, k_, (long long)k_ * c_, p.kside, k_, rows_ * k_,
        p.cside, c_, rows_ * c_, kTransformed, 0.f);
  kernels::winograd_outputs(p.cside, rows_, nullptr, false, xs_, dx, accumulate, s);
}

void WinogradConv::backward_filter(cublasHandle_t h, const float* x, const float* dy, float* dw, void* ws,
                                   bool first, bool last) const {
  const cudaStream_t s = stream_of(h);
  const Pieces p = pieces(ws);
  kernels::winograd_inputs(xs_, x, rows_, p.cside, s);
  kernels::winograd_output_grads(ys_, dy, rows_, p.kside, s);
  // s[e][q] (c x k) (+)= v[e] (c x part) z[e]^T (part x k) over part q's tiles: batch e * parts + q
  const long long part = rows_ / parts_;
  gemms(h, CUBLAS_OP_N, CUBLAS_OP_T, c_, k_, int(part), p.cside, c_, part * c_, p.kside, k_, part * k_, p.s,
        c_, (long long)k_ * c_, kTransformed * parts_, first ? 0.f : 1.f);
  if (last) add_filter_grad(h, dw, ws);
}

void WinogradConv::add_filter_grad(cublasHandle_t h, float* dw, const void* ws) const {
  kernels::winograd_filter_grads(k_, c_, parts_, static_cast<const float*>(ws), dw,
                                 stream_of(h));  // s: first
}

}  // namespace incept

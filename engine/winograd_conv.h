// A 3x3 / stride 1 / pad 1 fp32 convolution on channels-last views as F(2x2, 3x3) Winograd
// (kernels/winograd_ref.h: the algorithm and its layouts): the transforms of
// kernels/winograd_gpu.h around 16 strided-batched cuBLAS GEMMs with strict fp32 (FMA) maths,
// no TF32. 2.25x fewer products than the direct convolution, at fp32's error.
//
// For channels-last fp32 nets without tensor-core fp32 (kernels/gemm_tf32x3_gpu.h needs compute
// capability 8.0, and --fp32-math strict turns it off), where the GEMM convolution's products
// are the step's largest cost. A P100's default net is NCHW (recommended_options) and does not
// take it; GpuNetOptions::spatial_conv says which nets do.
//
// Gradient contract: dw accumulates (+=); dx is overwritten unless accumulate. The caller sets
// the cuBLAS handle's stream and workspace; the transforms run on the handle's stream. Nothing
// here allocates or synchronizes.
#pragma once

#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>

#include "kernels/shapes.h"

namespace incept {

class WinogradConv {
 public:
  // Whether a convolution of geometry g on input x runs here.
  static bool supports(const Nchw& x, const ConvGeom& g);

  // xs: the input view (channels-last; n images of c channels, h x w), ys: the output view
  // (k = ys.c channels, the same n, h, w; a concat slice allowed). sms: the device's SM count,
  // which sets how many slices (parts) the weight gradient's long sum over tiles is split into;
  // parts > 0 sets them instead (a convolution over the rest of a batch that another one
  // chunks, so that both add to the same partial sums).
  WinogradConv(const Nchw& xs, const Nchw& ys, int sms, int parts = 0);

  // Device workspace (bytes, 256-aligned pieces) that every call below needs.
  std::size_t workspace_bytes() const;

  // y = conv(x, w) (+ bias) (then ReLU when relu). w: KRSC filters [k][3][3][c]; bias: [k] or null.
  // filters_ready: the workspace already holds w's transform from an earlier chunk's forward.
  void forward(cublasHandle_t h, const float* x, const float* w, const float* bias, bool relu, float* y,
               void* ws, bool filters_ready = false) const;
  // dx (= or +=) the data gradient of dy (both in the views given at construction);
  // filters_ready: the workspace holds w's data-gradient transform from an earlier chunk's call.
  void backward_data(cublasHandle_t h, const float* dy, const float* w, float* dx, bool accumulate, void* ws,
                     bool filters_ready = false) const;
  // dw [k][3][3][c] += the filter gradient of dy over the input x. Over a batch in chunks: the
  // tiles' partial sums (the first piece of the workspace) start at the call with `first` and
  // add up over the calls that follow on the same workspace, with the same weight_grad_parts()
  // (backward_data may run between: it leaves them); the call with `last` adds them to dw, or
  // add_filter_grad does later (several workspaces, one per stream, added in a fixed order).
  void backward_filter(cublasHandle_t h, const float* x, const float* dy, float* dw, void* ws,
                       bool first = true, bool last = true) const;
  void add_filter_grad(cublasHandle_t h, float* dw, const void* ws) const;

  std::int64_t tiles() const { return tiles_; }
  std::int64_t rows() const { return rows_; }
  int weight_grad_parts() const { return parts_; }

 private:
  struct Pieces {
    float *s, *u, *cside, *kside;  // [16][parts][k][c]; filters [16][k][c]; [16][rows][c]; [16][rows][k]
  };
  Pieces pieces(void* ws) const;
  void gemms(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
             const float* a, int lda, long long sa, const float* b, int ldb, long long sb, float* c, int ldc,
             long long sc, int batch, float beta) const;

  Nchw xs_, ys_;
  int c_, k_;
  std::int64_t tiles_, rows_;
  int parts_;
};

}  // namespace incept

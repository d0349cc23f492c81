// GpuNet's per-layer device state, shared by gpu_net.cpp (the net, the step, host I/O) and
// gpu_net_conv.cpp (how each convolution is planned and run). Not part of the public API.
#pragma once

#include <memory>
#include <vector>

#include "engine/conv1x1_gemm.h"
#include "engine/cudnn_conv.h"
#include "engine/gpu_fc.h"
#include "engine/gpu_net.h"
#include "engine/winograd_conv.h"

namespace incept {

// Device-side state of one layer: its pointers (into the arenas) and library plans.
struct GpuNet::Layer {
  const LayerPlan* plan = nullptr;
  std::vector<Nchw> in_shape, out_shape;
  std::vector<void*> in, out, in_diff, out_diff;  // activation dtype, null where none
  std::vector<char> accumulate;
  std::vector<void*> w;       // compute weights (fp32 master or bf16 copy)
  std::vector<void*> w_diff;  // gradients (dtype)
  void* saved = nullptr;      // LRN scale (fp32) or MAX pool argmax (int32 NCHW, uint8 NHWC)
  float* scratch = nullptr;   // fp32 [N] for loss/accuracy
  float* output = nullptr;    // fp32 scalar output
  std::unique_ptr<CudnnConv> conv;
  std::unique_ptr<GpuFc> fc;  // InnerProduct, or (channels_last) a 1x1 stride-1 convolution as a GEMM
  bool fused_relu = false;    // conv: the next (in-place ReLU) layer is folded in
  // conv with fused_relu: its output's only consumer (an LRN or MAX pooling, relu_mask) applies the ReLU's
  // mask in its backward pass, so this layer's backward does not
  bool relu_masked_by_consumer = false;
  bool relu_mask =
      false;  // LRN / MAX pooling, channels-last: its input gradient also passes the ReLU mask (above)
  bool staged = false;  // conv, channels_last: output is a slice; cuDNN writes staging_ (dense)
  // Channels-last first convolution with few input channels: im2col rows of im2col_ld taps
  // (cols, kept for wgrad), filters padded to rows of im2col_ld (wpad, dwpad), one GEMM (fc).
  int im2col_ld = 0;
  DeviceBuffer cols, wpad, dwpad;
  DeviceBuffer wflip;          // fp32 3xTF32: flipped filters of the implicit data gradient (stride 1)
  bool rows_in_place = false;  // spatial_gemm: every GEMM reads the rows in place (no row buffer)
  // ... or (GpuNetOptions::few_channel_conv) one implicit-GEMM kernel (bf16) or direct FMA
  // kernel (fp32), with its weight gradient's per-block partial sums in few_partial.
  bool few_channels = false;
  DeviceBuffer few_partial;
  std::unique_ptr<Conv1x1Gemm> gemm1x1;  // NCHW fp32 1x1 convolution on cuBLAS
  bool spatial_gemm = false;             // channels-last RxS convolution as im2col (cols_) + GEMM (fc)
  int chunk_images = 0;  // spatial_gemm: images per im2col chunk (fc's rows); the batch when not chunked
  // fp32 channels-last 3x3 convolution as F(2x2, 3x3) Winograd, on chunks of chunk_images images
  // and (winograd_tail) the rest of the batch; workspace: the lane's cols
  std::unique_ptr<WinogradConv> winograd, winograd_tail;
  // ... chunks alternately on the lane's stream and its aux stream, each in its half of cols
  // (GpuNetOptions::winograd_streams), halves of winograd_ws bytes
  bool winograd_two_streams = false;
  std::size_t winograd_ws = 0;
  bool skip = false;  // a ReLU folded into the previous convolution
};

// What a layer runs with: a stream, the net's handles (bound to the lane per layer), and scratch
// no other lane touches. Lane 0 points at the net's own stream_ and buffers; the others own their
// stream and buffers (own_*). Every lane uses the net's one cuDNN and cuBLAS handle.
struct GpuNet::Lane {
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;    // the net's one handle: bind_handles(lane) before using it
  cublasHandle_t cublas = nullptr;  // the net's one handle: bind_handles(lane) before using it
  void* ws = nullptr;               // cuDNN workspace
  std::size_t ws_bytes = 0;
  void* cublas_ws = nullptr;  // cuBLASLt epilogue GEMMs (the cuBLAS handle has it set too)
  std::size_t cublas_ws_bytes = 0;
  void* staging = nullptr;        // dense output / gradient of a staged convolution
  float* bias_partial = nullptr;  // split bias-gradient reduction
  float* fc_partial = nullptr;    // split weight-gradient GEMM products
  void* gemm_partial = nullptr;   // NCHW fp32 1x1 per-image products
  // im2col rows of one chunk (GEMM convolutions that do not keep theirs), then their gradient; or
  // a Winograd convolution's workspace
  void* cols = nullptr;
  Stream own_stream;
  DeviceBuffer own_ws, own_cublas_ws, own_staging, own_bias_partial, own_fc_partial, own_gemm_partial,
      own_cols;
  Event join;  // recorded on this lane where a region joins
  // A second stream for Winograd convolutions' chunks (GpuNetOptions::winograd_streams), with
  // its own cuBLAS workspace; forked from and joined to `stream` within each layer.
  cudaStream_t aux = nullptr;
  void* aux_cublas_ws = nullptr;
  Stream own_aux;
  DeviceBuffer own_aux_cublas_ws;
  Event aux_fork, aux_join;
};

// Channels-last 1x1 stride-1 unpadded convolutions are plain GEMMs over the N*H*W pixels:
// cuBLAS runs them (cuDNN 9.19's legacy API measured 0.15-0.3 ms for any NHWC 1x1 layer of
// GoogLeNet on H100, 2-5x its NCHW time) and writes concat slices directly (row stride).
inline bool conv_as_gemm(const LayerPlan& lp) {
  if (lp.kind() != LayerKind::kConvolution) return false;
  const ConvGeom& g = std::get<ConvParams>(lp.params).geom;
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
         g.pad_w == 0;
}

}  // namespace incept

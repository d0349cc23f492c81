// GpuNet's per-layer device state, shared by gpu_net.cpp (the net, the step, host I/O) and
// gpu_net_conv.cpp (how each convolution is planned and run). Not part of the public API.
#pragma once

#include <memory>
#include <vector>

#include "engine/conv1x1_gemm.h"
#include "engine/cudnn_conv.h"
#include "engine/gpu_fc.h"
#include "engine/gpu_net.h"

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
  bool staged = false;        // conv, channels_last: output is a slice; cuDNN writes staging_ (dense)
  // Channels-last first convolution with few input channels: im2col rows of im2col_ld taps
  // (cols, kept for wgrad), filters padded to rows of im2col_ld (wpad, dwpad), one GEMM (fc).
  int im2col_ld = 0;
  DeviceBuffer cols, wpad, dwpad;
  std::unique_ptr<Conv1x1Gemm> gemm1x1;  // NCHW fp32 1x1 convolution on cuBLAS
  bool spatial_gemm = false;             // channels-last RxS convolution as im2col (cols_) + GEMM (fc)
  bool skip = false;                     // a ReLU folded into the previous convolution
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

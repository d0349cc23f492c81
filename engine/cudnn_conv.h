// One convolution layer on cuDNN 9 (legacy convolution API): descriptors for strided NCHW
// views, algorithms chosen by measurement when the net is planned, and the calls of a
// training step (forward, forward with fused bias+ReLU, backward data, backward filter).
//
// Why a class per layer: the descriptors and the chosen algorithms are fixed when the net
// is planned; a step only calls cuDNN with them. Nothing here allocates or synchronizes
// during a step: the caller owns one shared workspace sized to the largest need
// (max over layers of workspace_bytes()) and passes it to every call.
//
// Views: x and y may be channel slices of bigger tensors (Nchw::n_stride > C*H*W), which
// cuDNN takes through cudnnSetTensor4dDescriptorEx strides. dtype: fp32 (FMA math, TF32
// only when asked) or bf16 tensors with fp32 compute (tensor-op math).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "engine/cudnn_graph.h"
#include "engine/owners.h"
#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept {

using ActivationDesc = UniqueHandle<cudnnActivationDescriptor_t, cudnnDestroyActivationDescriptor>;

struct ConvPlanOptions {
  kernels::DType dtype = kernels::DType::kF32;
  bool allow_tf32 = false;  // fp32 only: let cuDNN use TF32 tensor cores
  // fp32 only: allow non-fused Winograd on 3x3 filters (about 2x faster 3x3 layers, but ~5x
  // the gradient error of GEMM algorithms: ~1.5e-3 vs ~3e-4 relative on GoogLeNet). FFT and
  // larger Winograd transforms are never used in strict fp32.
  bool allow_winograd = false;
  bool measure = true;  // cudnnFind*AlgorithmEx; false: first heuristic that fits
  std::size_t workspace_limit = std::size_t(512) << 20;  // largest workspace one algo may use
  bool try_fused_bias_relu = true;  // time cudnnConvolutionBiasActivationForward vs conv+kernel
  bool deterministic = false;       // skip algorithms cuDNN reports as non-deterministic
  // Channels-last: x and y are NHWC views (element (n, c, h, w) at n * nstride() +
  // (h * W + w) * P + c, pixel stride P = nstride() / (H * W), so a channel slice of a concat
  // output keeps its parent's P); weights are KRSC (filter format NHWC) on the device.
  bool nhwc = false;
  // How backward_data will be called: the measured search runs with beta = 0, but a step
  // adds into a shared input gradient (fan-out) and always adds into the weight gradient
  // (beta = 1), where cuDNN's fastest beta = 0 choice can be several times slower. When
  // measuring, the best few candidates are re-timed with the beta a step uses.
  bool dgrad_accumulates = false;
  // Channels-last bf16 with measure: also time the fastest engines cuDNN's backend API proposes
  // (engine/cudnn_graph.h) for each direction, with the beta a step uses, and run a direction
  // through that plan where it beat the legacy choice in the same timing.
  bool try_graph_api = true;
  // How many of the heuristic's engine configs each direction times (CudnnGraphConv::choose).
  int graph_configs = 12;
};

// Chosen algorithm of one direction, with its workspace need and measured time (ms, or -1
// when chosen by heuristics).
struct ConvAlgoChoice {
  int algo = -1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
  float time_ms = -1.f;
};

class CudnnConv {
 public:
  // x: input view (NCHW), y: output view (NCHW, shape must be output_shape(x, g) up to its
  // n_stride). Weights are KCRS dense, bias [K]; both in opt.dtype.
  CudnnConv(const Nchw& x, const ConvGeom& g, const Nchw& y, const ConvPlanOptions& opt);

  static Nchw output_shape(const Nchw& x, const ConvGeom& g);

  // Chooses the three algorithms (and whether the fused bias+ReLU path wins). x, w, y, bias
  // are scratch device buffers of this layer's shapes and dtype whose contents the search may
  // overwrite; workspace (workspace_bytes) bounds what an algorithm may use. Synchronizes:
  // call it when the net is planned, never inside a step.
  void choose_algorithms(cudnnHandle_t h, void* x, void* w, void* y, void* bias, void* workspace,
                         std::size_t workspace_bytes);

  // Largest workspace any chosen algorithm needs (valid after choose_algorithms).
  std::size_t workspace_bytes() const;

  // y = conv(x, w) (beta = 0) or y += conv(x, w) (accumulate).
  void forward(cudnnHandle_t h, const void* x, const void* w, void* y, void* workspace,
               std::size_t workspace_bytes, bool accumulate = false) const;
  // y = relu(conv(x, w) + bias): fused in cuDNN where that was measured faster, else the
  // convolution followed by kernels::bias_relu_fwd on the handle's stream.
  void forward_bias_relu(cudnnHandle_t h, const void* x, const void* w, const void* bias, void* y,
                         void* workspace, std::size_t workspace_bytes) const;
  // dx = conv_bwd_data(w, dy), overwriting or (accumulate) adding into dx.
  void backward_data(cudnnHandle_t h, const void* w, const void* dy, void* dx, void* workspace,
                     std::size_t workspace_bytes, bool accumulate = false) const;
  // dw (+)= conv_bwd_filter(x, dy). Parameter gradients accumulate by default.
  void backward_filter(cudnnHandle_t h, const void* x, const void* dy, void* dw, void* workspace,
                       std::size_t workspace_bytes, bool accumulate = true) const;

  const ConvAlgoChoice& fwd_choice() const { return fwd_; }
  const ConvAlgoChoice& bwd_data_choice() const { return bwd_data_; }
  const ConvAlgoChoice& bwd_filter_choice() const { return bwd_filter_; }
  bool fused_bias_relu() const { return fused_; }
  float fused_time_ms() const { return fused_ms_; }
  float unfused_time_ms() const { return unfused_ms_; }
  const Nchw& x_shape() const { return x_; }
  const Nchw& y_shape() const { return y_; }
  const ConvGeom& geom() const { return g_; }
  // "fwd algo 1 (tensor op) 0.12 ms ws 0 MiB | dgrad ... | wgrad ..." for logs.
  std::string describe() const;
  // The backend-API plan a direction runs through (null: the legacy algorithm).
  const CudnnGraphConv* graph_plan(ConvDirection d) const { return graph_[int(d)].get(); }

 private:
  void apply_math(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) const;
  void choose_graph_plans(cudnnHandle_t h, void* x, void* w, void* y, void* ws, std::size_t limit);
  // The plan for direction d when it serves this call (its beta, aligned pointers), else null.
  const CudnnGraphConv* graph_for(ConvDirection d, bool accumulate, const void* a, const void* b,
                                  const void* c, std::size_t ws_bytes) const;

  Nchw x_, y_;
  ConvGeom g_;
  ConvPlanOptions opt_;
  TensorDesc x_desc_, y_desc_, bias_desc_;
  FilterDesc w_desc_;
  ConvDesc fwd_desc_, bwd_data_desc_, bwd_filter_desc_;  // one per direction: math types differ
  ActivationDesc relu_desc_;
  ConvAlgoChoice fwd_, bwd_data_, bwd_filter_;
  bool chosen_ = false;
  bool fused_ = false;
  std::size_t fwd_fused_ws_ = 0;  // IMPLICIT_PRECOMP_GEMM's workspace when fused_
  float fused_ms_ = -1.f, unfused_ms_ = -1.f;
  std::unique_ptr<CudnnGraphConv> graph_[3];  // by ConvDirection, where faster than the legacy choice
  float legacy_ms_[3] = {-1.f, -1.f, -1.f};   // the legacy choice timed beside the backend plans
};

// Sets a 4-d tensor descriptor for a (possibly strided) NCHW view.
void set_nchw_desc(cudnnTensorDescriptor_t d, const Nchw& s, kernels::DType t);
// The same view read channels-last: pixel stride nstride() / (H * W) (see ConvPlanOptions::nhwc).
void set_nhwc_desc(cudnnTensorDescriptor_t d, const Nchw& s, kernels::DType t);
cudnnDataType_t cudnn_dtype(kernels::DType t);

}  // namespace incept

// cuDNN convolution of one layer (cudnn_conv.h): descriptors, measured algorithm choice,
// and the forward / backward calls of a step.
#include "engine/cudnn_conv.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/bias_relu_gpu.h"

namespace incept {

using kernels::DType;

cudnnDataType_t cudnn_dtype(DType t) {
  return t == DType::kF32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16;
}

void set_nchw_desc(cudnnTensorDescriptor_t d, const Nchw& s, DType t) {
  const int hw = s.h * s.w;
  CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, cudnn_dtype(t), s.n, s.c, s.h, s.w,
                                           static_cast<int>(s.nstride()), hw, s.w, 1));
}

void set_nhwc_desc(cudnnTensorDescriptor_t d, const Nchw& s, DType t) {
  const int hw = s.h * s.w;
  const int pix = static_cast<int>(s.nstride() / std::max(hw, 1));
  CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, cudnn_dtype(t), s.n, s.c, s.h, s.w,
                                           static_cast<int>(s.nstride()), 1, s.w * pix, pix));
}

Nchw CudnnConv::output_shape(const Nchw& x, const ConvGeom& g) {
  return Nchw{x.n, g.num_output, conv_out_dim(x.h, g.kernel_h, g.stride_h, g.pad_h),
              conv_out_dim(x.w, g.kernel_w, g.stride_w, g.pad_w)};
}

CudnnConv::CudnnConv(const Nchw& x, const ConvGeom& g, const Nchw& y, const ConvPlanOptions& opt)
    : x_(x), y_(y), g_(g), opt_(opt) {
  const Nchw want = output_shape(x, g);
  if (want.n != y.n || want.c != y.c || want.h != y.h || want.w != y.w)
    throw Error("CudnnConv: output view does not match the convolution's output shape");
  x_desc_ = make_tensor_desc();
  y_desc_ = make_tensor_desc();
  bias_desc_ = make_tensor_desc();
  w_desc_ = make_filter_desc();
  if (opt.nhwc) {
    set_nhwc_desc(x_desc_, x, opt.dtype);
    set_nhwc_desc(y_desc_, y, opt.dtype);
  } else {
    set_nchw_desc(x_desc_, x, opt.dtype);
    set_nchw_desc(y_desc_, y, opt.dtype);
  }
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias_desc_, CUDNN_TENSOR_NCHW, cudnn_dtype(opt.dtype), 1,
                                         g.num_output, 1, 1));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_desc_, cudnn_dtype(opt.dtype),
                                         opt.nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, g.num_output, x.c,
                                         g.kernel_h, g.kernel_w));
  for (ConvDesc* d : {&fwd_desc_, &bwd_data_desc_, &bwd_filter_desc_}) {
    *d = make_conv_desc();
    // fp32 accumulation for both dtypes (bf16 tensors, fp32 compute).
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(*d, g.pad_h, g.pad_w, g.stride_h, g.stride_w, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  }
  const cudnnMathType_t math = opt.dtype == DType::kBF16 ? CUDNN_TENSOR_OP_MATH
                               : opt.allow_tf32          ? CUDNN_DEFAULT_MATH
                                                         : CUDNN_FMA_MATH;
  fwd_.math = bwd_data_.math = bwd_filter_.math = math;
  apply_math(fwd_desc_, math);
  apply_math(bwd_data_desc_, math);
  apply_math(bwd_filter_desc_, math);
  cudnnActivationDescriptor_t a = nullptr;
  CUDNN_CHECK(cudnnCreateActivationDescriptor(&a));
  relu_desc_ = ActivationDesc(a);
  CUDNN_CHECK(cudnnSetActivationDescriptor(relu_desc_, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
}

void CudnnConv::apply_math(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) const {
  // FMA math (no TF32) in fp32 unless TF32 was asked for: a measured tensor-op algorithm is
  // only accepted for fp32 when allow_tf32 is set (see the filters in choose_algorithms).
  CUDNN_CHECK(cudnnSetConvolutionMathType(d, m));
}

namespace {

// What an algorithm must satisfy: fit the workspace limit, be deterministic when asked, and in
// strict fp32 (Caffe parity) use FMA math and no lossy transform. FFT transforms, and non-fused
// Winograd beyond 3x3 filters, lose precision in fp32 (seen on H100: a non-fused Winograd wgrad
// of LeNet's 5x5 conv1 gave 1.5e-2 relative error where a GEMM gives 3e-7); TF32 and bf16 may
// use them. Non-fused Winograd on 3x3 filters is allowed on request (allow_winograd): it makes
// fp32 3x3 layers about 2x faster (inception_3a/3x3 forward 0.46 vs 0.93 ms on H100) at ~5x
// the gradient error of GEMM algorithms (1.1e-3..1.8e-3 vs 2e-4..4e-4 relative on GoogLeNet).
struct AlgoFilter {
  std::size_t limit = 0;
  bool fp32_strict = false;
  bool deterministic = false;
  bool winograd_3x3 = false;  // non-fused Winograd allowed: requested and the filter is 3x3

  bool lossy(cudnnConvolutionFwdAlgo_t a) const {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
           (a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED && !winograd_3x3);
  }
  bool lossy(cudnnConvolutionBwdDataAlgo_t a) const {
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
           (a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED && !winograd_3x3);
  }
  bool lossy(cudnnConvolutionBwdFilterAlgo_t a) const {
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED && !winograd_3x3);
  }
  template <typename Perf>
  bool accepts(const Perf& p) const {
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) return false;
    if (deterministic && p.determinism != CUDNN_DETERMINISTIC) return false;
    const bool tensor_op =
        p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    return !(fp32_strict && (tensor_op || lossy(p.algo)));
  }
};

// The first acceptable result of a Find/Get list (sorted fastest first by cuDNN).
template <typename Perf>
bool pick(const Perf* perf, int n, const AlgoFilter& f, ConvAlgoChoice* out, bool measured) {
  for (int i = 0; i < n; ++i) {
    const Perf& p = perf[i];
    if (!f.accepts(p)) continue;
    out->algo = static_cast<int>(p.algo);
    // Strict fp32 searched with FMA math on the descriptor: keep it FMA whatever is reported.
    out->math = f.fp32_strict ? CUDNN_FMA_MATH : p.mathType;
    out->workspace = p.memory;
    out->time_ms = measured ? p.time : -1.f;
    return true;
  }
  return false;
}

// Re-times up to kRetime acceptable candidates of a Find list with the beta a step uses
// (call(choice) runs one call with beta = 1 and returns its status); keeps *out when none runs.
template <typename Perf, typename Call>
void retime_with_beta(cudaStream_t s, const Perf* perf, int n, const AlgoFilter& f, ConvAlgoChoice* out,
                      Call&& call) {
  constexpr int kRetime = 4;
  float best = -1.f;
  ConvAlgoChoice best_choice = *out;
  int tried = 0;
  for (int i = 0; i < n && tried < kRetime; ++i) {
    ConvAlgoChoice c;
    if (!pick(perf + i, 1, f, &c, true)) continue;
    ++tried;
    if (call(c) != CUDNN_STATUS_SUCCESS) {
      cudaGetLastError();
      continue;
    }
    const float ms = plan_time_ms(s, 5, [&] { CUDNN_CHECK(call(c)); });
    if (best < 0.f || ms < best) {
      best = ms;
      best_choice = c;
      best_choice.time_ms = ms;
    }
  }
  *out = best_choice;
}

}  // namespace

void CudnnConv::choose_algorithms(cudnnHandle_t h, void* x, void* w, void* y, void* bias, void* ws,
                                  std::size_t ws_bytes) {
  const std::size_t limit = std::min(opt_.workspace_limit, ws_bytes);
  const bool strict = opt_.dtype == DType::kF32 && !opt_.allow_tf32;
  const AlgoFilter filter{limit, strict, opt_.deterministic,
                          opt_.allow_winograd && g_.kernel_h == 3 && g_.kernel_w == 3};
  constexpr int kMax = 16;
  int found = 0;
  {
    cudnnConvolutionFwdAlgoPerf_t perf[kMax];
    if (opt_.measure)
      CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, x_desc_, x, w_desc_, w, fwd_desc_, y_desc_, y,
                                                         kMax, &found, perf, ws, limit));
    else
      CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, x_desc_, w_desc_, fwd_desc_, y_desc_, kMax,
                                                         &found, perf));
    if (!pick(perf, found, filter, &fwd_, opt_.measure))
      throw CudaError("cuDNN found no forward algorithm for this convolution");
  }
  {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
    if (opt_.measure)
      CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, w_desc_, w, y_desc_, y, bwd_data_desc_,
                                                              x_desc_, x, kMax, &found, perf, ws, limit));
    else
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w_desc_, y_desc_, bwd_data_desc_, x_desc_,
                                                              kMax, &found, perf));
    if (!pick(perf, found, filter, &bwd_data_, opt_.measure))
      throw CudaError("cuDNN found no backward-data algorithm for this convolution");
    if (opt_.measure && opt_.dgrad_accumulates) {
      cudaStream_t st = nullptr;
      CUDNN_CHECK(cudnnGetStream(h, &st));
      retime_with_beta(st, perf, found, filter, &bwd_data_, [&](const ConvAlgoChoice& c) {
        apply_math(bwd_data_desc_, c.math);
        const float one = 1.f;
        return cudnnConvolutionBackwardData(h, &one, w_desc_, w, y_desc_, y, bwd_data_desc_,
                                            static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws, limit,
                                            &one, x_desc_, x);
      });
    }
  }
  {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
    if (opt_.measure)
      CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, x_desc_, x, y_desc_, y, bwd_filter_desc_,
                                                                w_desc_, w, kMax, &found, perf, ws, limit));
    else
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, x_desc_, y_desc_, bwd_filter_desc_,
                                                                w_desc_, kMax, &found, perf));
    if (!pick(perf, found, filter, &bwd_filter_, opt_.measure))
      throw CudaError("cuDNN found no backward-filter algorithm for this convolution");
    if (opt_.measure) {  // a step always accumulates into the weight gradient
      cudaStream_t st = nullptr;
      CUDNN_CHECK(cudnnGetStream(h, &st));
      retime_with_beta(st, perf, found, filter, &bwd_filter_, [&](const ConvAlgoChoice& c) {
        apply_math(bwd_filter_desc_, c.math);
        const float one = 1.f;
        return cudnnConvolutionBackwardFilter(h, &one, x_desc_, x, y_desc_, y, bwd_filter_desc_,
                                              static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws, limit,
                                              &one, w_desc_, w);
      });
    }
  }
  apply_math(fwd_desc_, fwd_.math);
  apply_math(bwd_data_desc_, bwd_data_.math);
  apply_math(bwd_filter_desc_, bwd_filter_.math);
  chosen_ = true;
  for (auto& g : graph_) g.reset();
  if (opt_.measure && opt_.try_graph_api && opt_.nhwc && opt_.dtype == DType::kBF16)
    choose_graph_plans(h, x, w, y, ws, limit);

  // Fused bias+ReLU: cuDNN's legacy fused call runs only IMPLICIT_PRECOMP_GEMM, which may be
  // slower than the best plain algorithm plus our bias_relu kernel, so both are timed.
  fused_ = false;
  fused_ms_ = unfused_ms_ = -1.f;
  if (!opt_.try_fused_bias_relu || bias == nullptr || !opt_.measure) return;
  cudaStream_t s = nullptr;
  CUDNN_CHECK(cudnnGetStream(h, &s));
  std::size_t fws = 0;
  if (cudnnGetConvolutionForwardWorkspaceSize(h, x_desc_, w_desc_, fwd_desc_, y_desc_,
                                              CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                              &fws) != CUDNN_STATUS_SUCCESS ||
      fws > limit)
    return;
  const float one = 1.f, zero = 0.f;
  auto fused_call = [&] {
    return cudnnConvolutionBiasActivationForward(h, &one, x_desc_, x, w_desc_, w, fwd_desc_,
                                                 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws, fws,
                                                 &zero, y_desc_, y, bias_desc_, bias, relu_desc_, y_desc_, y);
  };
  if (fused_call() != CUDNN_STATUS_SUCCESS) {
    cudaGetLastError();
    return;  // this dtype/layout has no fused kernel: conv + bias_relu kernel
  }
  fused_ms_ = plan_time_ms(s, 10, [&] { CUDNN_CHECK(fused_call()); });
  unfused_ms_ = plan_time_ms(s, 10, [&] { forward_bias_relu(h, x, w, bias, y, ws, limit); });
  fused_ = fused_ms_ < unfused_ms_;
  if (fused_) fwd_fused_ws_ = fws;
}

// Each direction's legacy choice and the backend API's fastest plan timed the same way (5 calls
// after a warm-up), with the beta a step uses; the plan is kept only where it is faster by more
// than the timing noise (3 %).
void CudnnConv::choose_graph_plans(cudnnHandle_t h, void* x, void* w, void* y, void* ws, std::size_t limit) {
  cudaStream_t s = nullptr;
  CUDNN_CHECK(cudnnGetStream(h, &s));
  const float one = 1.f, zero = 0.f;
  for (const ConvDirection d :
       {ConvDirection::kForward, ConvDirection::kBackwardData, ConvDirection::kBackwardFilter}) {
    const bool acc =
        d == ConvDirection::kBackwardFilter || (d == ConvDirection::kBackwardData && opt_.dgrad_accumulates);
    const float* beta = acc ? &one : &zero;
    float legacy = -1.f;
    if (d == ConvDirection::kForward)
      legacy = plan_time_ms(s, 5, [&] {
        CUDNN_CHECK(cudnnConvolutionForward(h, &one, x_desc_, x, w_desc_, w, fwd_desc_,
                                            static_cast<cudnnConvolutionFwdAlgo_t>(fwd_.algo), ws, limit,
                                            beta, y_desc_, y));
      });
    else if (d == ConvDirection::kBackwardData)
      legacy = plan_time_ms(s, 5, [&] {
        CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, w_desc_, w, y_desc_, y, bwd_data_desc_,
                                                 static_cast<cudnnConvolutionBwdDataAlgo_t>(bwd_data_.algo),
                                                 ws, limit, beta, x_desc_, x));
      });
    else
      legacy = plan_time_ms(s, 5, [&] {
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(
            h, &one, x_desc_, x, y_desc_, y, bwd_filter_desc_,
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(bwd_filter_.algo), ws, limit, beta, w_desc_, w));
      });
    legacy_ms_[int(d)] = legacy;
    // A cuDNN whose backend API refuses this graph (another version, a deprecated attribute
    // gone) leaves the direction on its legacy algorithm.
    try {
      auto plan = std::make_unique<CudnnGraphConv>(h, x_, g_, y_, d, *beta);
      const float ms = plan->choose(h, x, w, y, ws, limit, opt_.deterministic, opt_.graph_configs);
      if (ms > 0.f && ms < 0.97f * legacy) graph_[int(d)] = std::move(plan);
    } catch (const CudaError&) {
      cudaGetLastError();
    }
  }
}

const CudnnGraphConv* CudnnConv::graph_for(ConvDirection d, bool accumulate, const void* a, const void* b,
                                           const void* c, std::size_t ws_bytes) const {
  const CudnnGraphConv* g = graph_[int(d)].get();
  if (g == nullptr || g->beta() != (accumulate ? 1.f : 0.f) || !CudnnGraphConv::fits(a, b, c) ||
      g->workspace_bytes() > ws_bytes)
    return nullptr;
  return g;
}

std::size_t CudnnConv::workspace_bytes() const {
  std::size_t graph = 0;
  for (const auto& g : graph_)
    if (g) graph = std::max(graph, g->workspace_bytes());
  return std::max({fwd_.workspace, bwd_data_.workspace, bwd_filter_.workspace,
                   fused_ ? fwd_fused_ws_ : std::size_t(0), graph});
}

void CudnnConv::forward(cudnnHandle_t h, const void* x, const void* w, void* y, void* ws,
                        std::size_t ws_bytes, bool accumulate) const {
  if (const CudnnGraphConv* g = graph_for(ConvDirection::kForward, accumulate, x, w, y, ws_bytes)) {
    g->run(h, x, w, y, ws);
    return;
  }
  const float one = 1.f, beta = accumulate ? 1.f : 0.f;
  CUDNN_CHECK(cudnnConvolutionForward(h, &one, x_desc_, x, w_desc_, w, fwd_desc_,
                                      static_cast<cudnnConvolutionFwdAlgo_t>(fwd_.algo), ws, ws_bytes, &beta,
                                      y_desc_, y));
}

void CudnnConv::forward_bias_relu(cudnnHandle_t h, const void* x, const void* w, const void* bias, void* y,
                                  void* ws, std::size_t ws_bytes) const {
  const float one = 1.f, zero = 0.f;
  if (fused_) {
    CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
        h, &one, x_desc_, x, w_desc_, w, fwd_desc_, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws,
        ws_bytes, &zero, y_desc_, y, bias_desc_, bias, relu_desc_, y_desc_, y));
    return;
  }
  forward(h, x, w, y, ws, ws_bytes);
  cudaStream_t s = nullptr;
  CUDNN_CHECK(cudnnGetStream(h, &s));
  if (opt_.nhwc) {
    if (opt_.dtype == DType::kF32)
      kernels::bias_relu_fwd_nhwc(y_, static_cast<const float*>(bias), true, static_cast<float*>(y), s);
    else
      kernels::bias_relu_fwd_nhwc(y_, static_cast<const __nv_bfloat16*>(bias), true,
                                  static_cast<__nv_bfloat16*>(y), s);
  } else if (opt_.dtype == DType::kF32) {
    kernels::bias_relu_fwd(y_, static_cast<const float*>(bias), true, static_cast<float*>(y), s);
  } else {
    kernels::bias_relu_fwd(y_, static_cast<const __nv_bfloat16*>(bias), true, static_cast<__nv_bfloat16*>(y),
                           s);
  }
}

void CudnnConv::backward_data(cudnnHandle_t h, const void* w, const void* dy, void* dx, void* ws,
                              std::size_t ws_bytes, bool accumulate) const {
  if (const CudnnGraphConv* g = graph_for(ConvDirection::kBackwardData, accumulate, dx, w, dy, ws_bytes)) {
    g->run(h, dx, w, dy, ws);
    return;
  }
  const float one = 1.f, beta = accumulate ? 1.f : 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, w_desc_, w, y_desc_, dy, bwd_data_desc_,
                                           static_cast<cudnnConvolutionBwdDataAlgo_t>(bwd_data_.algo), ws,
                                           ws_bytes, &beta, x_desc_, dx));
}

void CudnnConv::backward_filter(cudnnHandle_t h, const void* x, const void* dy, void* dw, void* ws,
                                std::size_t ws_bytes, bool accumulate) const {
  if (const CudnnGraphConv* g = graph_for(ConvDirection::kBackwardFilter, accumulate, x, dw, dy, ws_bytes)) {
    g->run(h, x, dw, dy, ws);
    return;
  }
  const float one = 1.f, beta = accumulate ? 1.f : 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, x_desc_, x, y_desc_, dy, bwd_filter_desc_,
                                             static_cast<cudnnConvolutionBwdFilterAlgo_t>(bwd_filter_.algo),
                                             ws, ws_bytes, &beta, w_desc_, dw));
}

std::string CudnnConv::describe() const {
  auto math = [](cudnnMathType_t m) {
    return m == CUDNN_FMA_MATH         ? "fma"
           : m == CUDNN_TENSOR_OP_MATH ? "tensor-op"
           : m == CUDNN_DEFAULT_MATH   ? "default"
                                       : "tensor-op-conv";
  };
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "fwd algo %d (%s) %.3f ms ws %.1f MiB | dgrad algo %d (%s) %.3f ms ws %.1f MiB | "
                "wgrad algo %d (%s) %.3f ms ws %.1f MiB | fused bias+relu %s (%.3f vs %.3f ms)",
                fwd_.algo, math(fwd_.math), fwd_.time_ms, fwd_.workspace / 1048576.0, bwd_data_.algo,
                math(bwd_data_.math), bwd_data_.time_ms, bwd_data_.workspace / 1048576.0, bwd_filter_.algo,
                math(bwd_filter_.math), bwd_filter_.time_ms, bwd_filter_.workspace / 1048576.0,
                fused_ ? "yes" : "no", fused_ms_, unfused_ms_);
  std::string out = buf;
  static const char* kDir[3] = {"fwd", "dgrad", "wgrad"};
  for (int d = 0; d < 3; ++d)
    if (graph_[d]) {
      char g[240];
      std::snprintf(g, sizeof g, " | %s via %s (legacy %.3f ms)", kDir[d], graph_[d]->describe().c_str(),
                    legacy_ms_[d]);
      out += g;
    }
  return out;
}

}  // namespace incept

// How each convolution of a GpuNet is planned and run (gpu_net.h: "Layout", GpuNetOptions):
// cuDNN (NCHW, and channels-last 3x3/5x5 in bf16, with a dense staging output where the
// output is a concat slice), strided-batched cuBLAS GEMMs (NCHW fp32 1x1), one cuBLAS GEMM over
// all pixels (channels-last 1x1), im2col + GEMM + col2im (channels-last RxS: fp32 by default),
// and im2col into padded rows for a first layer with few channels (conv1; or, with
// GpuNetOptions::few_channel_conv, the implicit-GEMM kernels of kernels/conv_few_channels_gpu.h
// in bf16 and the direct FMA kernels of kernels/conv_few_fp32_gpu.h in fp32).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "engine/check.h"
#include "engine/gpu_net_layer.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/conv_few_channels_gpu.h"
#include "kernels/conv_few_fp32_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/gemm_tf32x3_gpu.h"
#include "kernels/im2col_gpu.h"
#include "kernels/layout.h"

namespace incept {

using kernels::DType;

namespace {
// The im2col rows of images x (channels-last view xs) as the 3xTF32 kernel reads them in place.
kernels::ConvRows conv_rows(const Nchw& xs, const float* x, const ConvGeom& g, const Nchw& ys) {
  kernels::ConvRows r;
  r.x = x, r.h = xs.h, r.w = xs.w, r.c = xs.c, r.pixel_stride = int(nhwc_pixel_stride(xs));
  r.image_stride = xs.nstride();
  r.kh = g.kernel_h, r.kw = g.kernel_w, r.sh = g.stride_h, r.sw = g.stride_w, r.ph = g.pad_h, r.pw = g.pad_w;
  r.oh = ys.h, r.ow = ys.w;
  return r;
}

// The data gradient of a stride-1 convolution over images xc (channels-last, dense pixels) as
// one GEMM: dx'[cin, pixels] (+)= wt'^T rows(dy), rows(dy) the im2col rows of the output
// gradient (cout channels, padding kernel - 1 - pad: the full correlation) read in place and wt
// the flipped filters (kernels::flip_filters_nhwc). dx's pixels must be dense (nstride = h w ps).
kernels::GemmProblem flipped_dgrad(const Nchw& xc, const Nchw& ys, const ConvGeom& g, const float* dy,
                                   const float* wt, float* dx, bool accumulate) {
  Nchw yc = ys;
  yc.n = xc.n;
  yc.n_stride = ys.nstride();
  ConvGeom fg = g;
  fg.pad_h = g.kernel_h - 1 - g.pad_h, fg.pad_w = g.kernel_w - 1 - g.pad_w;
  kernels::GemmProblem p;
  p.trans_a = true, p.m = xc.c, p.n = xc.n * xc.h * xc.w, p.k = g.kernel_h * g.kernel_w * ys.c;
  p.a = wt, p.lda = p.k;
  p.rows = conv_rows(yc, dy, fg, xc);
  p.c = dx, p.ldc = int(nhwc_pixel_stride(xc)), p.beta = accumulate ? 1.f : 0.f;
  if (xc.nstride() != std::int64_t(xc.h) * xc.w * p.ldc || fg.pad_h < 0 || fg.pad_w < 0)
    p.m = 0;  // not one matrix of pixels, or not a full correlation: unsupported
  return p;
}

// conv1's own kernels (GpuNetOptions::few_channel_conv): bf16 on tensor cores, fp32 on FMA.
void few_channels_fwd(const Nchw& xs, const __nv_bfloat16* x, const ConvGeom& g, const __nv_bfloat16* w,
                      const __nv_bfloat16* b, bool relu, const Nchw& ys, __nv_bfloat16* y, cudaStream_t s) {
  kernels::conv_few_channels_fwd(xs, x, g, w, b, relu, ys, y, s);
}
void few_channels_fwd(const Nchw& xs, const float* x, const ConvGeom& g, const float* w, const float* b,
                      bool relu, const Nchw& ys, float* y, cudaStream_t s) {
  kernels::conv_few_fp32_fwd(xs, x, g, w, b, relu, ys, y, s);
}
void few_channels_bwd_filter(const Nchw& xs, const __nv_bfloat16* x, const ConvGeom& g, const Nchw& ys,
                             const __nv_bfloat16* y, const __nv_bfloat16* dy, bool relu, __nv_bfloat16* dw,
                             __nv_bfloat16* db, float* partial, cudaStream_t s) {
  kernels::conv_few_channels_bwd_filter(xs, x, g, ys, y, dy, relu, dw, db, partial, s);
}
void few_channels_bwd_filter(const Nchw& xs, const float* x, const ConvGeom& g, const Nchw& ys,
                             const float* y, const float* dy, bool relu, float* dw, float* db, float* partial,
                             cudaStream_t s) {
  kernels::conv_few_fp32_bwd_filter(xs, x, g, ys, y, dy, relu, dw, db, partial, s);
}
}  // namespace

void GpuNet::fold_relu(std::size_t l) {
  const LayerPlan& lp = *layers_[l]->plan;
  if (!opt_.fuse_conv_relu || !std::get<ConvParams>(lp.params).geom.bias || l + 1 >= layers_.size()) return;
  const LayerPlan& next = *layers_[l + 1]->plan;
  if (next.kind() == LayerKind::kReLU && next.bottoms[0] == lp.tops[0] && next.tops[0] == lp.tops[0]) {
    layers_[l]->fused_relu = true;
    layers_[l + 1]->skip = true;
  }
}

void GpuNet::fold_relu_masks(bool lrn, bool max_pool) {
  for (std::size_t m = 0; m < layers_.size(); ++m) {
    Layer& M = *layers_[m];
    const LayerPlan& mp = *M.plan;
    const bool folds_lrn = lrn && mp.kind() == LayerKind::kLRN;
    const bool folds_pool = max_pool && mp.kind() == LayerKind::kPooling &&
                            std::get<PoolParams>(mp.params).geom.method == PoolMethod::kMax && M.saved;
    if (!folds_lrn && !folds_pool) continue;
    if (!M.in_diff[0] || M.accumulate[0]) continue;
    const int blob = mp.bottoms[0];
    Layer* producer = nullptr;
    int readers = 0;
    for (const auto& L : layers_) {
      if (L->skip) continue;  // the folded ReLU itself
      const LayerPlan& lp = *L->plan;
      readers += int(std::count(lp.bottoms.begin(), lp.bottoms.end(), blob));
      if (lp.kind() == LayerKind::kConvolution && L->fused_relu && lp.tops[0] == blob) producer = L.get();
    }
    if (producer && readers == 1) {
      M.relu_mask = true;
      producer->relu_masked_by_consumer = true;
    }
  }
}

void GpuNet::plan_conv(std::size_t l, void* probe_ws, std::size_t probe_bytes) {
  Layer& L = *layers_[l];
  const LayerPlan& lp = *L.plan;
  const bool nhwc = opt_.channels_last;
  const ConvGeom& g = std::get<ConvParams>(lp.params).geom;
  const bool fp32 = opt_.dtype == DType::kF32;
  const bool spatial_gemm = opt_.spatial_conv == SpatialConv::kGemm ||
                            opt_.spatial_conv == SpatialConv::kWinograd ||
                            (opt_.spatial_conv == SpatialConv::kAuto && fp32);
  const bool winograd = fp32 && (opt_.spatial_conv == SpatialConv::kWinograd ||
                                 (opt_.spatial_conv == SpatialConv::kAuto && !opt_.tf32x3));
  const int taps = g.kernel_h * g.kernel_w * L.in_shape[0].c;  // R * S * C
  // Channels-last RxS convolution as im2col rows of ld (>= taps) + one GEMM per chunk of
  // images: the largest divisor of the batch whose rows fit GpuNetOptions::im2col_chunk_bytes
  // (at least one image; the batch when 0). Training keeps the whole batch's rows in the layer's
  // own buffer for the weight gradient (keep_im2col), else they are rebuilt in backward in the
  // lane's cols, which then also takes the rows' gradient for col2im.
  auto plan_im2col_gemm = [&](int ld) {
    const Nchw& y = L.out_shape[0];
    L.spatial_gemm = true;
    const std::size_t image_rows_bytes = std::size_t(y.h) * y.w * ld * esize_;
    L.chunk_images = y.n;
    if (opt_.im2col_chunk_bytes)
      while (L.chunk_images > 1 && (y.n % L.chunk_images != 0 ||
                                    std::size_t(L.chunk_images) * image_rows_bytes > opt_.im2col_chunk_bytes))
        --L.chunk_images;
    L.fc =
        std::make_unique<GpuFc>(FcShape{L.chunk_images * y.h * y.w, ld, y.c, ld, int(nhwc_pixel_stride(y))},
                                opt_.dtype, opt_.allow_tf32, opt_.tf32x3, opt_.tf32x3_all_shapes);
    if (opt_.keep_im2col && plan_.options.training)
      L.cols = DeviceBuffer(std::size_t(y.n) * image_rows_bytes);
  };
  if (nhwc && conv_as_gemm(lp)) {
    const Nchw &x = L.in_shape[0], &y = L.out_shape[0];
    FcShape fs{x.n * x.h * x.w, x.c, y.c, int(nhwc_pixel_stride(x)), int(nhwc_pixel_stride(y))};
    L.fc = std::make_unique<GpuFc>(fs, opt_.dtype, opt_.allow_tf32, opt_.tf32x3, opt_.tf32x3_all_shapes);
    fold_relu(l);
  } else if (!nhwc && opt_.gemm_1x1 && opt_.dtype == DType::kF32 && conv_as_gemm(lp)) {
    L.gemm1x1 = std::make_unique<Conv1x1Gemm>(L.in_shape[0], L.out_shape[0], opt_.dtype, opt_.allow_tf32);
    fold_relu(l);
  } else if (nhwc && L.in_shape[0].c % 8 != 0 && !L.in_diff[0]) {
    // conv1 (C = 3; no input gradient). cuDNN's channels-last kernels run it at ~12 TFLOP/s.
    const Nchw& y = L.out_shape[0];
    if (opt_.dtype == DType::kBF16 && opt_.few_channel_conv &&
        kernels::conv_few_channels_supported(L.in_shape[0], g, y)) {
      // implicit GEMM, the taps read from the input rows in shared memory (no im2col rows)
      L.few_channels = true;
      if (plan_.options.training)
        L.few_partial =
            DeviceBuffer(kernels::conv_few_channels_wgrad_scratch(L.in_shape[0], g, y) * sizeof(float));
    } else if (opt_.dtype == DType::kF32 && opt_.few_channel_conv &&
               kernels::conv_few_fp32_supported(L.in_shape[0], g, y)) {
      // a direct convolution on FMA arithmetic, the taps read from the input rows in shared
      // memory (no im2col rows; the same fp32 products and sums whatever --fp32-math says)
      L.few_channels = true;
      if (plan_.options.training)
        L.few_partial =
            DeviceBuffer(kernels::conv_few_fp32_wgrad_scratch(L.in_shape[0], g, y) * sizeof(float));
    } else {
      // im2col + GEMM, bandwidth-bound, rows and filters padded to im2col_ld taps (16-byte
      // aligned rows; no input gradient, so no col2im)
      L.im2col_ld = (taps + 7) / 8 * 8;
      plan_im2col_gemm(L.im2col_ld);
      L.wpad = DeviceBuffer(std::size_t(y.c) * L.im2col_ld * esize_);
      L.dwpad = DeviceBuffer(std::size_t(y.c) * L.im2col_ld * esize_);
    }
    fold_relu(l);
  } else if (nhwc && winograd && WinogradConv::supports(L.in_shape[0], g)) {
    // F(2x2, 3x3) Winograd on chunks of images: the whole batch where its workspace fits
    // winograd_chunk_bytes, else the most images whose workspace fits (half of it on two
    // streams), then the rest of the batch with the same weight-gradient parts (their partial
    // sums add up across the chunks). The workspace is the lane's cols (plan_lanes).
    const Nchw &x = L.in_shape[0], &y = L.out_shape[0];
    auto chunk = [&](int images, int parts) {
      Nchw xc = x, yc = y;
      xc.n = yc.n = images;
      xc.n_stride = x.nstride(), yc.n_stride = y.nstride();
      return WinogradConv(xc, yc, kernels::sm_count(), parts);
    };
    const std::size_t budget = opt_.winograd_chunk_bytes;
    int images = y.n;
    if (budget && chunk(images, 0).workspace_bytes() > budget) {
      L.winograd_two_streams = opt_.winograd_streams > 1;
      const std::size_t per_chunk = L.winograd_two_streams ? budget / 2 : budget;
      while (images > 1 && chunk(images, 0).workspace_bytes() > per_chunk) --images;
      if (images == y.n) L.winograd_two_streams = false;
    }
    L.chunk_images = images;
    L.winograd = std::make_unique<WinogradConv>(chunk(images, 0));
    L.winograd_ws = (L.winograd->workspace_bytes() + 255) / 256 * 256;
    if (y.n % images)
      L.winograd_tail = std::make_unique<WinogradConv>(chunk(y.n % images, L.winograd->weight_grad_parts()));
    fold_relu(l);
  } else if (nhwc && spatial_gemm && taps % 8 == 0) {
    plan_im2col_gemm(taps);
    // 3xTF32, stride 1: the data gradient as the convolution of dy with the flipped filters,
    // the kernel reading dy's rows in place (spatial_gemm_backward): no row gradient, no col2im
    const bool train = plan_.options.training;
    if (opt_.tf32x3 && opt_.dtype == DType::kF32 && train && L.in_diff[0] && g.stride_h == 1 &&
        g.stride_w == 1 && !opt_.keep_im2col)
      L.wflip = DeviceBuffer(std::size_t(taps) * L.out_shape[0].c * sizeof(float));
    // Every GEMM of the layer on the kernel with the rows in place: no row buffer, so no chunks
    // (one GEMM per direction over the whole batch)
    if (opt_.tf32x3 && opt_.dtype == DType::kF32 && !opt_.keep_im2col &&
        (!train || !L.in_diff[0] || L.wflip.bytes())) {
      const Nchw &x = L.in_shape[0], &y = L.out_shape[0];
      auto whole =
          std::make_unique<GpuFc>(FcShape{y.n * y.h * y.w, taps, y.c, taps, int(nhwc_pixel_stride(y))},
                                  opt_.dtype, opt_.allow_tf32, opt_.tf32x3, opt_.tf32x3_all_shapes);
      bool in_place = whole->takes_rows(conv_rows(x, nullptr, g, y), train);
      if (in_place && L.wflip.bytes()) {
        float* any = reinterpret_cast<float*>(std::uintptr_t(256));  // shapes only
        const kernels::GemmProblem d = flipped_dgrad(x, y, g, any, any, any, false);
        in_place = opt_.tf32x3_all_shapes ? kernels::tf32x3_supported(d) : kernels::tf32x3_preferred(d);
      }
      if (in_place) {
        L.rows_in_place = true;
        L.chunk_images = y.n;
        L.fc = std::move(whole);
      }
    }
    fold_relu(l);
  } else {
    ConvPlanOptions co;
    co.dtype = opt_.dtype;
    co.allow_tf32 = opt_.allow_tf32;
    co.allow_winograd = opt_.allow_winograd;
    // Deterministic mode also fixes the choice itself: timing-based choices (and the fused
    // bias+ReLU path, chosen by timing) can differ between two runs and change the bits.
    co.measure = opt_.measure_algorithms && !opt_.deterministic;
    co.workspace_limit = opt_.workspace_limit;
    co.deterministic = opt_.deterministic;
    co.try_fused_bias_relu = opt_.fuse_conv_relu;
    co.graph_configs = opt_.graph_configs;
    co.dgrad_accumulates = L.in_diff[0] != nullptr && L.accumulate[0];
    co.nhwc = nhwc;
    const Nchw& y = L.out_shape[0];
    L.staged = nhwc && !y.dense();
    // The algorithm search below writes its output to a staging buffer that grows here to the
    // largest staged layer; plan_lanes() then gives each lane one sized for its own layers.
    if (L.staged && staging_.bytes() < std::size_t(y.count()) * esize_)
      staging_ = DeviceBuffer(std::size_t(y.count()) * esize_);
    L.conv = std::make_unique<CudnnConv>(L.in_shape[0], g, L.staged ? Nchw{y.n, y.c, y.h, y.w} : y, co);
    // Scratch for the search: this layer's own buffers (contents are not yet meaningful)
    // and the gradient arena for the weights, so the parameters are never touched.
    L.conv->choose_algorithms(cudnn_, L.in[0], L.w_diff[0], L.staged ? staging_.data() : L.out[0],
                              g.bias ? L.w_diff[1] : nullptr, probe_ws, probe_bytes);
    fold_relu(l);
  }
}

template <typename T>
void GpuNet::conv_forward(Layer& L, const Lane& R) {
  const LayerPlan& lp = *L.plan;
  void* ws = R.ws;
  const std::size_t wsb = R.ws_bytes;
  auto in = [&](int i) { return static_cast<const T*>(L.in[i]); };
  auto out = [&](int i) { return static_cast<T*>(L.out[i]); };
  const bool bias = std::get<ConvParams>(lp.params).geom.bias;
  const T* b = bias ? static_cast<const T*>(L.w[1]) : nullptr;
  if (L.few_channels) {
    few_channels_fwd(L.in_shape[0], in(0), std::get<ConvParams>(lp.params).geom,
                     static_cast<const T*>(L.w[0]), b, L.fused_relu, L.out_shape[0], out(0), R.stream);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (L.winograd) {
      winograd_forward(L, R);
      return;
    }
  }
  if (L.spatial_gemm) {  // RxS: im2col rows, then a GEMM, per chunk of images
    spatial_gemm_forward<T>(L, R);
    return;
  }
  if (L.fc) {  // channels-last 1x1 convolution: one GEMM straight into the (slice) output
    if (bias && L.fc->fused_forward_ready()) {  // bias (+ReLU) in cuBLASLt's epilogue
      L.fc->forward_fused(cublas_lt_, L.in[0], L.w[0], L.out[0], R.cublas_ws, R.cublas_ws_bytes, R.stream);
    } else {
      L.fc->forward(R.cublas, L.in[0], L.w[0], nullptr, false, L.out[0]);
      if (bias || L.fused_relu)
        kernels::bias_relu_fwd_nhwc<T>(L.out_shape[0], b, L.fused_relu, out(0), R.stream);
    }
  } else if (L.gemm1x1) {  // NCHW fp32 1x1: batched GEMM into the (slice) output, then bias+ReLU there
    L.gemm1x1->forward(R.cublas, L.in[0], L.w[0], L.out[0]);
    if (bias || L.fused_relu) kernels::bias_relu_fwd<T>(L.out_shape[0], b, L.fused_relu, out(0), R.stream);
  } else if (L.staged) {  // dense conv output, then bias (+ReLU) into the concat slice
    L.conv->forward(R.cudnn, L.in[0], L.w[0], R.staging, ws, wsb);
    kernels::bias_relu_copy_nhwc<T>(L.conv->y_shape(), static_cast<T*>(R.staging), b, L.fused_relu,
                                    L.out_shape[0], out(0), R.stream);
  } else if (L.fused_relu) {
    L.conv->forward_bias_relu(R.cudnn, L.in[0], L.w[0], L.w[1], L.out[0], ws, wsb);
  } else {
    L.conv->forward(R.cudnn, L.in[0], L.w[0], L.out[0], ws, wsb);
    if (bias && opt_.channels_last)
      kernels::bias_relu_fwd_nhwc<T>(L.out_shape[0], b, false, out(0), R.stream);
    else if (bias)
      kernels::bias_relu_fwd<T>(L.out_shape[0], b, false, out(0), R.stream);
  }
}

template <typename T>
void GpuNet::conv_backward(Layer& L, const Lane& R) {
  const LayerPlan& lp = *L.plan;
  void* ws = R.ws;
  const std::size_t wsb = R.ws_bytes;
  auto in = [&](int i) { return static_cast<const T*>(L.in[i]); };
  auto dout = [&](int i) { return static_cast<const T*>(L.out_diff[i]); };
  const bool bias = std::get<ConvParams>(lp.params).geom.bias;
  const bool relu = L.fused_relu && !L.relu_masked_by_consumer;  // the mask is still to apply
  // dz = relu'(y) * dy in place (fused ReLU) and db += sum dz, in one pass; staged
  // (channels-last slice output): dz is written densely into the staging buffer.
  T* dz = L.staged ? static_cast<T*>(R.staging) : static_cast<T*>(L.out_diff[0]);
  T* db = bias ? static_cast<T*>(L.w_diff[1]) : nullptr;
  const T* y = static_cast<const T*>(L.out[0]);
  if (L.few_channels) {  // dz, the weight and the bias gradient in one pass (no input gradient)
    few_channels_bwd_filter(L.in_shape[0], in(0), std::get<ConvParams>(lp.params).geom, L.out_shape[0], y,
                            dout(0), relu, static_cast<T*>(L.w_diff[0]), db, L.few_partial.as<float>(),
                            R.stream);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (L.winograd) {  // mask and bias gradient in place in the slice, then both gradients
      if (bias || relu)
        kernels::relu_bias_bwd_nhwc<T>(L.out_shape[0], y, dout(0), relu, L.out_shape[0], dz, db,
                                       R.bias_partial, R.stream);
      winograd_backward(L, R, dz);
      return;
    }
  }
  if (L.fc) {  // channels-last 1x1 GEMM: mask and bias gradient in place in the slice
    if (bias || relu)
      kernels::relu_bias_bwd_nhwc<T>(L.out_shape[0], y, dout(0), relu, L.out_shape[0], dz, db, R.bias_partial,
                                     R.stream);
    if (L.spatial_gemm) {  // im2col + GEMM per chunk of images
      spatial_gemm_backward<T>(L, R, dz);
      return;
    }
    L.fc->backward_filter(R.cublas, L.in[0], dz, L.w_diff[0], nullptr, R.fc_partial);
    wait_input_grad(R);
    if (L.in_diff[0]) L.fc->backward_data(R.cublas, dz, L.w[0], L.in_diff[0], L.accumulate[0]);
    return;
  }
  if (opt_.channels_last) {
    if (bias || relu || L.staged)
      kernels::relu_bias_bwd_nhwc<T>(L.out_shape[0], y, dout(0), relu, L.conv->y_shape(), dz, db,
                                     R.bias_partial, R.stream);
  } else if (bias || relu) {
    kernels::relu_bias_bwd<T>(L.out_shape[0], y, dout(0), relu, dz, db, R.bias_partial, R.stream);
  }
  if (L.gemm1x1) {
    L.gemm1x1->backward_filter(R.cublas, L.in[0], dz, L.w_diff[0], R.gemm_partial);
    wait_input_grad(R);
    if (L.in_diff[0]) L.gemm1x1->backward_data(R.cublas, L.w[0], dz, L.in_diff[0], L.accumulate[0]);
    return;
  }
  L.conv->backward_filter(R.cudnn, L.in[0], dz, L.w_diff[0], ws, wsb, true);
  wait_input_grad(R);  // other lanes' writes of the gradient this one adds to (backward())
  if (L.in_diff[0]) L.conv->backward_data(R.cudnn, L.w[0], dz, L.in_diff[0], ws, wsb, L.accumulate[0]);
}

// Channels-last RxS convolution as im2col + GEMM over chunks of L.chunk_images images: each
// chunk's rows (kept in L.cols at the chunk's place, else in the lane's cols) and one GEMM of
// L.fc (sized for a chunk) into the chunk's output rows (a slice view: the images' stride).
template <typename T>
void GpuNet::spatial_gemm_forward(Layer& L, const Lane& R) {
  const ConvGeom& g = std::get<ConvParams>(L.plan->params).geom;
  const Nchw &xs = L.in_shape[0], &ys = L.out_shape[0];
  const int c = L.chunk_images, k = L.fc->shape().k;
  const std::size_t chunk_rows = std::size_t(c) * ys.h * ys.w;
  const T* b = g.bias ? static_cast<const T*>(L.w[1]) : nullptr;
  const void* w = L.w[0];
  if (L.im2col_ld) {  // conv1: filters padded to the rows' im2col_ld taps
    kernels::pad_rows<T>(g.num_output, g.kernel_h * g.kernel_w * xs.c, L.im2col_ld, static_cast<const T*>(w),
                         L.wpad.as<T>(), R.stream);
    w = L.wpad.data();
  }
  Nchw xc = xs, yc = ys;
  xc.n = yc.n = c;
  xc.n_stride = xs.nstride();
  yc.n_stride = ys.nstride();
  for (int i = 0, j = 0; i < xs.n; i += c, ++j) {
    const T* x = static_cast<const T*>(L.in[0]) + i * xs.nstride();
    T* y = static_cast<T*>(L.out[0]) + i * ys.nstride();
    const bool fused = b && L.fc->fused_forward_ready();
    if constexpr (std::is_same_v<T, float>) {
      // rows not kept for backward: the 3xTF32 kernel reads them in place (implicit GEMM). Not
      // conv1 (im2col_ld, 3 channels): one 4-byte copy per column there made the step 0.13 ms
      // slower than its im2col rows (H200, session 12).
      if (!L.cols.bytes() && !L.im2col_ld &&
          L.fc->forward_rows(conv_rows(xc, x, g, ys), w, y, fused, R.stream)) {
        if (!fused && (b || L.fused_relu)) kernels::bias_relu_fwd_nhwc<T>(yc, b, L.fused_relu, y, R.stream);
        continue;
      }
      if (L.rows_in_place) throw Error(L.plan->name + ": the 3xTF32 kernel refused rows planned in place");
    }
    T* cols = L.cols.bytes() ? L.cols.as<T>() + j * chunk_rows * k : static_cast<T*>(R.cols);
    kernels::im2col_nhwc<T>(xc, x, g, k, cols, R.stream);
    if (fused) {  // bias (+ReLU) in cuBLASLt's epilogue
      L.fc->forward_fused(cublas_lt_, cols, w, y, R.cublas_ws, R.cublas_ws_bytes, R.stream);
    } else {
      L.fc->forward(R.cublas, cols, w, nullptr, false, y);
      if (b || L.fused_relu) kernels::bias_relu_fwd_nhwc<T>(yc, b, L.fused_relu, y, R.stream);
    }
  }
}

// Its backward after the ReLU mask and bias gradient (dz, in place in the output gradient): per
// chunk, the weight gradient from the rows (kept, or rebuilt in the lane's cols), then the rows'
// gradient (into the lane's cols, which the weight gradient has read) and col2im into the chunk's input
// gradient. The first col2im waits for the other lanes' writes of that gradient (wait_input_grad).
template <typename T>
void GpuNet::spatial_gemm_backward(Layer& L, const Lane& R, T* dz) {
  const ConvGeom& g = std::get<ConvParams>(L.plan->params).geom;
  const Nchw &xs = L.in_shape[0], &ys = L.out_shape[0];
  const int c = L.chunk_images, k = L.fc->shape().k;
  const std::size_t chunk_rows = std::size_t(c) * ys.h * ys.w;
  Nchw xc = xs;
  xc.n = c;
  xc.n_stride = xs.nstride();
  // conv1 (im2col_ld): the weight gradient of the padded filters, added to the gradient after
  // the last chunk
  void* dw = L.im2col_ld ? L.dwpad.data() : L.w_diff[0];
  if (L.im2col_ld) L.dwpad.fill_bytes(0, R.stream);
  // The flipped filters once per step for the implicit data gradient (L.wflip: planned for it)
  const bool flip = std::is_same_v<T, float> && L.wflip.bytes() && L.in_diff[0];
  if constexpr (std::is_same_v<T, float>)
    if (flip)
      kernels::flip_filters_nhwc(g.num_output, g.kernel_h, g.kernel_w, xs.c,
                                 static_cast<const float*>(L.w[0]), L.wflip.as<float>(), R.stream);
  for (int i = 0, j = 0; i < xs.n; i += c, ++j) {
    const T* x = static_cast<const T*>(L.in[0]) + i * xs.nstride();
    const T* dy = dz + i * ys.nstride();
    T* cols = L.cols.bytes() ? L.cols.as<T>() + j * chunk_rows * k : static_cast<T*>(R.cols);
    bool in_place = false;  // the 3xTF32 kernel reads the rows in place instead of a rebuild
    if constexpr (std::is_same_v<T, float>)
      in_place = !L.cols.bytes() && !L.im2col_ld &&
                 L.fc->backward_filter_rows(R.cublas, conv_rows(xc, x, g, ys), dy, dw, R.fc_partial);
    if (!in_place) {
      if (L.rows_in_place) throw Error(L.plan->name + ": the 3xTF32 kernel refused rows planned in place");
      if (!L.cols.bytes()) kernels::im2col_nhwc<T>(xc, x, g, k, cols, R.stream);
      L.fc->backward_filter(R.cublas, cols, dy, dw, nullptr, R.fc_partial);
    }
    if (!L.in_diff[0]) continue;
    if constexpr (std::is_same_v<T, float>) {
      if (flip) {
        const kernels::GemmProblem p =
            flipped_dgrad(xc, ys, g, dy, L.wflip.as<float>(),
                          static_cast<float*>(L.in_diff[0]) + i * xs.nstride(), L.accumulate[0]);
        if (opt_.tf32x3_all_shapes ? kernels::tf32x3_supported(p) : kernels::tf32x3_preferred(p)) {
          if (i == 0) wait_input_grad(R);
          kernels::gemm_tf32x3(p, R.stream);
          continue;
        }
      }
    }
    if (L.rows_in_place) throw Error(L.plan->name + ": the 3xTF32 kernel refused rows planned in place");
    L.fc->backward_data(R.cublas, dy, L.w[0], R.cols, false);
    if (i == 0) wait_input_grad(R);
    kernels::col2im_nhwc<T>(xc, static_cast<const T*>(R.cols), g, k,
                            static_cast<T*>(L.in_diff[0]) + i * xs.nstride(), L.accumulate[0], R.stream);
  }
  if (L.im2col_ld)
    kernels::unpad_add_rows<T>(g.num_output, L.im2col_ld, g.kernel_h * g.kernel_w * xs.c, L.dwpad.as<T>(),
                               static_cast<T*>(L.w_diff[0]), R.stream);
}

namespace {
// The net's cuBLAS handle on lane R's stream and workspace (half 0) or its aux stream's (1).
template <typename Lane>
void winograd_stream(const Lane& R, int half) {
  CUBLAS_CHECK(cublasSetStream(R.cublas, half ? R.aux : R.stream));
  CUBLAS_CHECK(cublasSetWorkspace(R.cublas, half ? R.aux_cublas_ws : R.cublas_ws, R.cublas_ws_bytes));
}
// Forks R's aux stream from its stream, or joins it back.
template <typename Lane>
void fork_aux(const Lane& R) {
  CUDA_CHECK(cudaEventRecord(R.aux_fork, R.stream));
  CUDA_CHECK(cudaStreamWaitEvent(R.aux, R.aux_fork, 0));
}
template <typename Lane>
void join_aux(const Lane& R) {
  CUDA_CHECK(cudaEventRecord(R.aux_join, R.aux));
  CUDA_CHECK(cudaStreamWaitEvent(R.stream, R.aux_join, 0));
}
}  // namespace

// Winograd convolution per chunk of L.chunk_images images (views with the whole tensor's image
// stride), in the lane's cols; bias and ReLU in the output transform. On two streams, chunk j
// runs on stream j % 2 in workspace half j % 2, and each half transforms the filters once.
void GpuNet::winograd_forward(Layer& L, const Lane& R) {
  const ConvGeom& g = std::get<ConvParams>(L.plan->params).geom;
  const Nchw &xs = L.in_shape[0], &ys = L.out_shape[0];
  const float* b = g.bias ? static_cast<const float*>(L.w[1]) : nullptr;
  const int halves = L.winograd_two_streams ? 2 : 1;
  if (halves == 2) fork_aux(R);
  for (int i = 0, j = 0; i < xs.n; i += L.chunk_images, ++j) {
    const int half = j % halves;
    if (halves == 2) winograd_stream(R, half);
    const WinogradConv& conv = i + L.chunk_images <= xs.n ? *L.winograd : *L.winograd_tail;
    conv.forward(R.cublas, static_cast<const float*>(L.in[0]) + i * xs.nstride(),
                 static_cast<const float*>(L.w[0]), b, L.fused_relu,
                 static_cast<float*>(L.out[0]) + i * ys.nstride(),
                 static_cast<char*>(R.cols) + half * L.winograd_ws, j >= halves);
  }
  if (halves == 2) {
    winograd_stream(R, 0);
    join_aux(R);
  }
}

// After the ReLU mask and bias gradient (dz, in place in the output gradient): per chunk the
// filter gradient's partial sums (added to the gradient after the last chunk, one workspace
// half after the other), then the data gradient, after the other lanes' writes of the input
// gradient it may add to (wait_input_grad: on one stream after the first chunk's filter
// gradient, on two before the fork).
void GpuNet::winograd_backward(Layer& L, const Lane& R, float* dz) {
  const Nchw &xs = L.in_shape[0], &ys = L.out_shape[0];
  const float* w = static_cast<const float*>(L.w[0]);
  float* dw = static_cast<float*>(L.w_diff[0]);
  const int halves = L.winograd_two_streams ? 2 : 1;
  if (halves == 2) {
    if (L.in_diff[0]) wait_input_grad(R);
    fork_aux(R);
  }
  for (int i = 0, j = 0; i < xs.n; i += L.chunk_images, ++j) {
    const int half = j % halves;
    if (halves == 2) winograd_stream(R, half);
    const bool last = i + L.chunk_images >= xs.n;
    const WinogradConv& conv = i + L.chunk_images <= xs.n ? *L.winograd : *L.winograd_tail;
    const float* dy = dz + i * ys.nstride();
    void* ws = static_cast<char*>(R.cols) + half * L.winograd_ws;
    conv.backward_filter(R.cublas, static_cast<const float*>(L.in[0]) + i * xs.nstride(), dy, dw, ws,
                         j < halves, last && halves == 1);
    if (!L.in_diff[0]) continue;
    if (halves == 1 && i == 0) wait_input_grad(R);
    conv.backward_data(R.cublas, dy, w, static_cast<float*>(L.in_diff[0]) + i * xs.nstride(), L.accumulate[0],
                       ws, j >= halves);
  }
  if (halves == 2) {
    winograd_stream(R, 0);
    join_aux(R);
    for (int half = 0; half < 2; ++half)
      L.winograd->add_filter_grad(R.cublas, dw, static_cast<char*>(R.cols) + half * L.winograd_ws);
  }
}

template void GpuNet::conv_forward<float>(Layer&, const Lane&);
template void GpuNet::conv_forward<__nv_bfloat16>(Layer&, const Lane&);
template void GpuNet::conv_backward<float>(Layer&, const Lane&);
template void GpuNet::conv_backward<__nv_bfloat16>(Layer&, const Lane&);

}  // namespace incept

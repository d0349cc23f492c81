// Per-kernel micro-benchmark of the GPU path at GoogLeNet's real shapes (batch 128 by
// default): every hand-written kernel (GB/s against the measured copy bandwidth) and every
// cuDNN convolution of the net, forward / backward data / backward filter (TFLOP/s against
// the measured cuBLAS GEMM rate), in fp32 and bf16. Each number is the median of >= 20
// CUDA-event-timed samples after warm-up; a sample times several back-to-back launches.
// Inception branches write into their channel slice of the concat output, as in the net.
//
//   bench_kernels [--batch 128] [--samples 20] [--dtype fp32,bf16] [--skip-conv] [--fp32-gemm-math]
//                 [--winograd]
//   (--fp32-gemm-math: cuBLAS's fp32 maths on conv2/3x3's GEMMs, then incept's 3xTF32 kernel
//   against strict cuBLAS on the step's GEMMs as GpuFc runs them; --winograd: the 3x3 layers in
//   fp32 with FMA only, im2col + strict cuBLAS against Winograd F(2x2, 3x3))
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "engine/cudnn_conv.h"
#include "engine/device.h"
#include "engine/gpu_fc.h"
#include "engine/winograd_conv.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/dropout_gpu.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_tf32x3_gpu.h"
#include "kernels/im2col_gpu.h"
#include "kernels/input_transform_gpu.h"
#include "kernels/lrn_gpu.h"
#include "kernels/pool_gpu.h"
#include "kernels/sgd_gpu.h"
#include "kernels/softmax_loss_gpu.h"
#include "kernels/winograd_gpu.h"
#include "kernels/winograd_ref.h"

using namespace incept;
using kernels::DType;
using bf16 = __nv_bfloat16;

namespace {

int g_samples = 20;

// Median ms of one call of fn (each sample times `inner` calls).
float time_ms(cudaStream_t s, const std::function<void()>& fn, int inner = 5) {
  Event a = make_event(), b = make_event();
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> t;
  for (int k = 0; k < g_samples; ++k) {
    CUDA_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < inner; ++i) fn();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / inner);
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// Random device data (uniform [-1, 1), a 1M-value pattern repeated) so nothing runs on zeros.
void fill_random(DeviceBuffer& b, DType t, unsigned seed) {
  const std::size_t n = b.bytes() / kernels::dtype_size(t);
  std::vector<float> h(std::min<std::size_t>(n, 1 << 20));
  unsigned s = seed * 2654435761u + 1;
  for (auto& v : h) v = ((s = s * 1664525u + 1013904223u) >> 8) * (2.f / 16777216.f) - 1.f;
  std::vector<std::uint16_t> hb(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) hb[i] = kernels::f32_to_bf16_bits(h[i]);
  const std::size_t es = kernels::dtype_size(t);
  for (std::size_t off = 0; off < n; off += h.size()) {
    const std::size_t cnt = std::min(h.size(), n - off);
    CUDA_CHECK(cudaMemcpy(b.as<char>() + off * es, t == DType::kF32 ? (void*)h.data() : (void*)hb.data(),
                          cnt * es, cudaMemcpyHostToDevice));
  }
}

struct Ceilings {
  double copy_gbs = 0;     // device-to-device copy, bytes read + written
  double gemm_tflops = 0;  // cuBLAS GEMM 8192^3 in the dtype
};

Ceilings measure_ceilings(cudaStream_t s, DType t) {
  Ceilings c;
  const std::size_t bytes = std::size_t(2) << 30;
  DeviceBuffer a(bytes), b(bytes);
  fill_random(a, DType::kF32, 1);
  const float ms = time_ms(
      s, [&] { CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, s)); }, 2);
  c.copy_gbs = 2.0 * bytes / (ms * 1e6);
  const int n = 8192;
  DeviceBuffer x(std::size_t(n) * n * kernels::dtype_size(t)), y(x.bytes()), z(x.bytes());
  fill_random(x, t, 2);
  fill_random(y, t, 3);
  GpuFc fc(FcShape{n, n, n}, t);
  CublasHandle h = make_cublas();
  CUBLAS_CHECK(cublasSetStream(h, s));
  const float gms = time_ms(
      s, [&] { fc.forward(h, x.data(), y.data(), nullptr, false, z.data()); }, 2);
  c.gemm_tflops = 2.0 * n * n * double(n) / (gms * 1e9);
  return c;
}

void row(const char* name, const char* dt, float ms, double bytes, double flops, const Ceilings& c) {
  if (flops > 0)
    std::printf("%-46s %-5s %9.4f ms %8.1f TFLOP/s (%4.0f%% of gemm)\n", name, dt, ms, flops / (ms * 1e9),
                100.0 * flops / (ms * 1e9) / c.gemm_tflops);
  else
    std::printf("%-46s %-5s %9.4f ms %8.1f GB/s    (%4.0f%% of copy)\n", name, dt, ms, bytes / (ms * 1e6),
                100.0 * bytes / (ms * 1e6) / c.copy_gbs);
}

template <typename T>
void bench_hand_written(cudaStream_t s, int nb, const Ceilings& c) {
  const DType t = kernels::DTypeOf<T>::value;
  const char* dt = kernels::dtype_name(t);
  const double es = sizeof(T);
  DeviceBuffer a(std::size_t(nb) * 64 * 112 * 112 * es * 2), b(a.bytes()), d(a.bytes()), e(a.bytes());
  fill_random(a, t, 4);
  fill_random(b, t, 5);
  fill_random(d, t, 6);
  DeviceBuffer bias(4096 * es), mask(std::size_t(nb) * 64 * 56 * 56 * 4),
      scale(std::size_t(nb) * 192 * 56 * 56 * 4);
  fill_random(bias, t, 7);
  DeviceBuffer part(std::size_t(1) << 22);  // relu_bias_bwd partial sums (fp32)
  char name[128];
  for (Nchw sh : {Nchw{nb, 64, 112, 112}, Nchw{nb, 128, 28, 28}, Nchw{nb, 384, 7, 7}}) {
    std::snprintf(name, sizeof name, "bias_relu_fwd %dx%dx%d", sh.c, sh.h, sh.w);
    row(name, dt, time_ms(s, [&] { kernels::bias_relu_fwd(sh, bias.as<T>(), true, a.as<T>(), s); }),
        2.0 * sh.count() * es, 0, c);
    std::snprintf(name, sizeof name, "relu_bias_bwd %dx%dx%d", sh.c, sh.h, sh.w);
    row(name, dt,
        time_ms(s,
                [&] {
                  kernels::relu_bias_bwd(sh, a.as<T>(), b.as<T>(), true, d.as<T>(), bias.as<T>(),
                                         part.as<float>(), s);
                }),
        3.0 * sh.count() * es, 0, c);
  }
  const LrnGeom lg;
  for (Nchw sh : {Nchw{nb, 64, 56, 56}, Nchw{nb, 192, 56, 56}}) {
    for (bool store : {true, false}) {
      float* sc = store ? scale.as<float>() : nullptr;
      std::snprintf(name, sizeof name, "lrn_fwd %dx%dx%d scale %s", sh.c, sh.h, sh.w,
                    store ? "stored" : "none");
      row(name, dt, time_ms(s, [&] { kernels::lrn_fwd(sh, a.as<T>(), lg, sh, b.as<T>(), sc, s); }),
          sh.count() * (2.0 * es + (store ? 4 : 0)), 0, c);
      std::snprintf(name, sizeof name, "lrn_bwd %dx%dx%d scale %s", sh.c, sh.h, sh.w,
                    store ? "stored" : "recomputed");
      row(name, dt,
          time_ms(s,
                  [&] {
                    kernels::lrn_bwd(sh, a.as<T>(), sh, b.as<T>(), d.as<T>(), sc, lg, e.as<T>(), false, s);
                  }),
          sh.count() * (4.0 * es + (store ? 4 : 0)), 0, c);
    }
  }
  struct P {
    const char* label;
    Nchw x;
    PoolGeom g;
  };
  auto pg = [](PoolMethod m, int k, int st, int p) {
    PoolGeom g;
    g.method = m, g.kernel_h = g.kernel_w = k, g.stride_h = g.stride_w = st, g.pad_h = g.pad_w = p;
    return g;
  };
  const P pools[] = {
      {"pool1 max 3/2 112->56", {nb, 64, 112, 112}, pg(PoolMethod::kMax, 3, 2, 0)},
      {"pool2 max 3/2 56->28", {nb, 192, 56, 56}, pg(PoolMethod::kMax, 3, 2, 0)},
      {"3a/pool max 3/1 p1 28", {nb, 192, 28, 28}, pg(PoolMethod::kMax, 3, 1, 1)},
      {"pool3 max 3/2 28->14", {nb, 480, 28, 28}, pg(PoolMethod::kMax, 3, 2, 0)},
      {"4x/pool max 3/1 p1 14", {nb, 512, 14, 14}, pg(PoolMethod::kMax, 3, 1, 1)},
      {"pool4 max 3/2 14->7", {nb, 832, 14, 14}, pg(PoolMethod::kMax, 3, 2, 0)},
      {"aux ave 5/3 14->4", {nb, 528, 14, 14}, pg(PoolMethod::kAve, 5, 3, 0)},
      {"pool5 ave 7/1 7->1", {nb, 1024, 7, 7}, pg(PoolMethod::kAve, 7, 1, 0)},
  };
  for (const P& p : pools) {
    const Nchw ys = pool_out_shape(p.x, p.g);
    std::int32_t* m = p.g.method == PoolMethod::kMax ? mask.as<std::int32_t>() : nullptr;
    const double mbytes = m ? 4.0 * ys.count() : 0;
    std::snprintf(name, sizeof name, "pool_fwd %s", p.label);
    row(name, dt, time_ms(s, [&] { kernels::pool_fwd(p.x, a.as<T>(), p.g, ys, b.as<T>(), m, s); }),
        (p.x.count() + ys.count()) * es + mbytes, 0, c);
    std::snprintf(name, sizeof name, "pool_bwd %s", p.label);
    row(name, dt, time_ms(s, [&] { kernels::pool_bwd(p.x, p.g, ys, b.as<T>(), m, d.as<T>(), false, s); }),
        (p.x.count() + ys.count()) * es + mbytes, 0, c);
  }
  // classifier-side kernels
  DeviceBuffer labels(nb * 4), rows(nb * 4), loss(4), step(8);
  CUDA_CHECK(cudaMemset(labels.data(), 0, nb * 4));
  row("softmax_xent_fwd+bwd 1000 classes", dt,
      time_ms(s,
              [&] {
                kernels::softmax_xent_fwd(nb, 1000, a.as<T>(), labels.as<std::int32_t>(), 1.f,
                                          rows.as<float>(), loss.as<float>(), b.as<T>(), s);
              }),
      2.0 * nb * 1000 * es, 0, c);
  row("accuracy top-5 1000 classes", dt,
      time_ms(s,
              [&] {
                kernels::accuracy_fwd(nb, 1000, a.as<T>(), labels.as<std::int32_t>(), 5, rows.as<float>(),
                                      loss.as<float>(), s);
              }),
      1.0 * nb * 1000 * es, 0, c);
  const Nchw ds{nb, 1024, 1, 1};
  row("dropout_fwd 1024", dt,
      time_ms(s,
              [&] {
                kernels::dropout_fwd(ds, a.as<T>(), 0.4f, ref::DropoutKey{1, 2, 3}, nullptr, b.as<T>(), s);
              }),
      2.0 * ds.count() * es, 0, c);
  // input transform: 256x256 HWC bytes -> 224 crop
  DeviceBuffer src(std::size_t(nb) * 256 * 256 * 3), params(nb * sizeof(kernels::CropParams)),
      mean(3 * 256 * 256 * 4);
  fill_random(src, DType::kF32, 8);
  std::vector<kernels::CropParams> hp(nb);
  for (int i = 0; i < nb; ++i) hp[i] = {i % 33, (i * 7) % 33, i & 1};
  params.upload(hp.data(), params.bytes());
  fill_random(mean, DType::kF32, 9);
  kernels::InputTransform it;
  it.mean_image = mean.as<float>();
  const Nchw is{nb, 3, 224, 224};
  row("input_transform 256 HWC u8 -> 224 crop", dt,
      time_ms(s,
              [&] {
                kernels::input_transform_fwd(it, src.as<std::uint8_t>(), params.as<kernels::CropParams>(), is,
                                             a.as<T>(), s);
              }),
      is.count() * (1.0 + 4.0 + es), 0, c);
}

void bench_sgd(cudaStream_t s, const Ceilings& c) {
  // GoogLeNet's 13,378,280 parameters as 124 segments (weights lr 1 / decay 1, biases 2 / 0).
  const std::int64_t total = 13'378'280;
  std::vector<kernels::SgdSegment> segs;
  std::int64_t off = 0;
  for (int i = 0; i < 62; ++i) {
    const std::int64_t wn = total / 62 - 256, bn = 256;
    segs.push_back({off, wn, 1.f, 1.f});
    segs.push_back({off + wn, i == 61 ? total - off - wn : bn, 2.f, 0.f});
    off += wn + bn;
  }
  DeviceBuffer d_segs(segs.size() * sizeof segs[0]), p(sizeof(kernels::SgdStepParams)), w(total * 4),
      h(total * 4), g(total * 4), lp(total * 2);
  d_segs.upload(segs.data(), d_segs.bytes());
  const kernels::SgdStepParams sp{0.01f, 0.9f, 2e-4f, 1.f};
  p.upload(&sp, sizeof sp);
  fill_random(w, DType::kF32, 10);
  fill_random(h, DType::kF32, 11);
  fill_random(g, DType::kF32, 12);
  row("sgd_update 13.4M params fp32 grads", "fp32",
      time_ms(s,
              [&] {
                kernels::sgd_update(int(segs.size()), d_segs.as<kernels::SgdSegment>(), total,
                                    p.as<kernels::SgdStepParams>(), g.as<float>(), w.as<float>(),
                                    h.as<float>(), nullptr, s);
              }),
      total * 20.0, 0, c);
  row("sgd_update 13.4M params bf16 grads+copy", "bf16",
      time_ms(s,
              [&] {
                kernels::sgd_update(int(segs.size()), d_segs.as<kernels::SgdSegment>(), total,
                                    p.as<kernels::SgdStepParams>(), g.as<bf16>(), w.as<float>(),
                                    h.as<float>(), lp.as<bf16>(), s);
              }),
      total * 20.0, 0, c);
}

// GoogLeNet's convolutions: (name, Cin, H, K, R, stride, pad, concat C total, channel offset).
struct ConvSpec {
  std::string name;
  int c, h, k, r, s, p, y_total, y_c0;
};

std::vector<ConvSpec> googlenet_convs() {
  // conv1 also with its 3 input channels zero-padded to 4 and 8 (channels-last tensor-core shapes).
  std::vector<ConvSpec> v = {{"conv1/7x7_s2", 3, 224, 64, 7, 2, 3, 64, 0},
                             {"conv1/7x7_s2 (C padded to 4)", 4, 224, 64, 7, 2, 3, 64, 0},
                             {"conv1/7x7_s2 (C padded to 8)", 8, 224, 64, 7, 2, 3, 64, 0},
                             {"conv2/3x3_reduce", 64, 56, 64, 1, 1, 0, 64, 0},
                             {"conv2/3x3", 64, 56, 192, 3, 1, 1, 192, 0}};
  struct M {
    const char* n;
    int cin, h, c1, c3r, c3, c5r, c5, pp;
  };
  const M mods[] = {{"3a", 192, 28, 64, 96, 128, 16, 32, 32},     {"3b", 256, 28, 128, 128, 192, 32, 96, 64},
                    {"4a", 480, 14, 192, 96, 208, 16, 48, 64},    {"4b", 512, 14, 160, 112, 224, 24, 64, 64},
                    {"4c", 512, 14, 128, 128, 256, 24, 64, 64},   {"4d", 512, 14, 112, 144, 288, 32, 64, 64},
                    {"4e", 528, 14, 256, 160, 320, 32, 128, 128}, {"5a", 832, 7, 256, 160, 320, 32, 128, 128},
                    {"5b", 832, 7, 384, 192, 384, 48, 128, 128}};
  for (const M& m : mods) {
    const int tot = m.c1 + m.c3 + m.c5 + m.pp;
    const std::string p = std::string("inception_") + m.n + "/";
    v.push_back({p + "1x1", m.cin, m.h, m.c1, 1, 1, 0, tot, 0});
    v.push_back({p + "3x3_reduce", m.cin, m.h, m.c3r, 1, 1, 0, m.c3r, 0});
    v.push_back({p + "3x3", m.c3r, m.h, m.c3, 3, 1, 1, tot, m.c1});
    v.push_back({p + "5x5_reduce", m.cin, m.h, m.c5r, 1, 1, 0, m.c5r, 0});
    v.push_back({p + "5x5", m.c5r, m.h, m.c5, 5, 1, 2, tot, m.c1 + m.c3});
    v.push_back({p + "pool_proj", m.cin, m.h, m.pp, 1, 1, 0, tot, m.c1 + m.c3 + m.c5});
  }
  v.push_back({"loss1/conv", 512, 4, 128, 1, 1, 0, 128, 0});
  v.push_back({"loss2/conv", 528, 4, 128, 1, 1, 0, 128, 0});
  return v;
}

void bench_convs(cudaStream_t s, int nb, DType t, bool nhwc, const Ceilings& c) {
  CudnnHandle h = make_cudnn();
  CUDNN_CHECK(cudnnSetStream(h, s));
  const std::size_t ws_limit = std::size_t(512) << 20;
  DeviceBuffer ws(ws_limit);
  const double es = kernels::dtype_size(t);
  DeviceBuffer x(std::size_t(nb) * 832 * 28 * 28 * es), y(std::size_t(nb) * 64 * 112 * 112 * es),
      w(std::size_t(832) * 384 * 9 * es), bias(1024 * es);
  fill_random(x, t, 13);
  fill_random(y, t, 14);
  fill_random(w, t, 15);
  fill_random(bias, t, 16);
  double tot_ms = 0, tot_flops = 0;
  std::size_t ws_max = 0;
  for (const ConvSpec& cs : googlenet_convs()) {
    ConvGeom g;
    g.num_output = cs.k, g.kernel_h = g.kernel_w = cs.r, g.stride_h = g.stride_w = cs.s,
    g.pad_h = g.pad_w = cs.p;
    const Nchw xs{nb, cs.c, cs.h, cs.h};
    const Nchw yd = CudnnConv::output_shape(xs, g);
    const Nchw ys{nb, cs.k, yd.h, yd.w, std::int64_t(cs.y_total) * yd.h * yd.w};
    // NCHW: the slice starts at channel c0's plane; NHWC: at channel c0 of the first pixel.
    void* yp = y.as<char>() + std::size_t(cs.y_c0) * (nhwc ? 1 : yd.h * yd.w) * std::size_t(es);
    ConvPlanOptions opt;
    opt.dtype = t;
    opt.nhwc = nhwc;
    CudnnConv conv(xs, g, ys, opt);
    try {
      conv.choose_algorithms(h, x.data(), w.data(), yp, bias.data(), ws.data(), ws.bytes());
    } catch (const std::exception& e) {  // e.g. a layout/stride combination cuDNN refuses
      std::printf("%-28s %-4s %s: %s\n", cs.name.c_str(), kernels::dtype_name(t), nhwc ? "NHWC" : "NCHW",
                  e.what());
      cudaGetLastError();
      continue;
    }
    ws_max = std::max(ws_max, conv.workspace_bytes());
    const double flops = 2.0 * yd.count() * cs.c * cs.r * cs.r;
    const float f = time_ms(
        s, [&] { conv.forward_bias_relu(h, x.data(), w.data(), bias.data(), yp, ws.data(), ws.bytes()); });
    const float dd = cs.name.rfind("conv1", 0) == 0 ? 0.f : time_ms(s, [&] {
      conv.backward_data(h, w.data(), yp, x.data(), ws.data(), ws.bytes());
    });
    const float dw =
        time_ms(s, [&] { conv.backward_filter(h, x.data(), yp, w.data(), ws.data(), ws.bytes()); });
    std::printf(
        "%-28s %-4s fwd+bias+relu %7.4f ms (%5.1f TF/s) dgrad %7.4f ms (%5.1f) wgrad %7.4f ms (%5.1f)  algos "
        "%d/%d/%d%s\n",
        cs.name.c_str(), kernels::dtype_name(t), f, flops / (f * 1e9), dd, dd > 0 ? flops / (dd * 1e9) : 0.0,
        dw, flops / (dw * 1e9), conv.fwd_choice().algo, conv.bwd_data_choice().algo,
        conv.bwd_filter_choice().algo, conv.fused_bias_relu() ? " fused" : "");
    if (cs.name.find("padded") != std::string::npos) continue;  // variants: not part of the net's total
    tot_ms += f + dd + dw;
    tot_flops += flops * (cs.c == 3 ? 2 : 3);
  }
  std::printf(
      "ALL CONVS %s %s batch %d: %.3f ms per step (fwd+dgrad+wgrad), %.1f TFLOP/s effective (%.0f%% of "
      "gemm), "
      "workspace max %.1f MiB\n",
      kernels::dtype_name(t), nhwc ? "NHWC" : "NCHW", nb, tot_ms, tot_flops / (tot_ms * 1e9),
      100 * tot_flops / (tot_ms * 1e9) / c.gemm_tflops, ws_max / 1048576.0);
}

// conv1 channels-last as the net runs it in bf16 NHWC: im2col, filter padding, one cuBLAS
// GEMM, bias+ReLU, and backward (ReLU/bias gradient, wgrad GEMM), each timed alone.
template <typename T>
void bench_conv1_im2col(cudaStream_t s, int nb) {
  ConvGeom g;
  g.num_output = 64, g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = 3;
  const Nchw xs{nb, 3, 224, 224}, ys{nb, 64, 112, 112};
  const int kc = 147, ld = 152, rows = nb * 112 * 112;
  DeviceBuffer x(xs.count() * sizeof(T)), cols(std::size_t(rows) * ld * sizeof(T)), y(ys.count() * sizeof(T)),
      w(64 * kc * sizeof(T)), wp(64 * ld * sizeof(T)), b(64 * sizeof(T)),
      part(std::max<std::size_t>(kernels::relu_bias_bwd_nhwc_scratch(ys), 1) * 4);
  const DType t = kernels::DTypeOf<T>::value;
  fill_random(x, t, 21);
  fill_random(w, t, 22);
  fill_random(b, t, 23);
  fill_random(y, t, 24);
  CublasHandle cb = make_cublas();
  CUBLAS_CHECK(cublasSetStream(cb, s));
  DeviceBuffer cws(std::size_t(32) << 20);
  CUBLAS_CHECK(cublasSetWorkspace(cb, cws.data(), cws.bytes()));
  GpuFc fc(FcShape{rows, ld, 64, ld, 64}, t);
  const double gb = 1e-6;
  const float t_im2col = time_ms(s, [&] { kernels::im2col_nhwc<T>(xs, x.as<T>(), g, ld, cols.as<T>(), s); });
  const float t_pad = time_ms(s, [&] { kernels::pad_rows<T>(64, kc, ld, w.as<T>(), wp.as<T>(), s); });
  const float t_gemm = time_ms(s, [&] { fc.forward(cb, cols.data(), wp.data(), nullptr, false, y.data()); });
  const float t_bias = time_ms(s, [&] { kernels::bias_relu_fwd_nhwc<T>(ys, b.as<T>(), true, y.as<T>(), s); });
  const float t_rb = time_ms(s, [&] {
    kernels::relu_bias_bwd_nhwc<T>(ys, y.as<T>(), y.as<T>(), false, ys, y.as<T>(), b.as<T>(),
                                   part.as<float>(), s);
  });
  const float t_wgrad =
      time_ms(s, [&] { fc.backward_filter(cb, cols.data(), y.data(), wp.data(), nullptr); });
  const double cols_mb = double(rows) * ld * sizeof(T) * gb, y_mb = double(ys.count()) * sizeof(T) * gb;
  std::printf(
      "conv1 im2col path %s: im2col %.3f ms (%.0f GB/s written), pad %.4f, GEMM fwd %.3f ms (%.0f GB/s), "
      "bias+relu %.3f, relu/bias bwd %.3f, wgrad GEMM %.3f ms (%.0f GB/s)\n",
      kernels::dtype_name(t), t_im2col, cols_mb / t_im2col, t_pad, t_gemm, (cols_mb + y_mb) / t_gemm, t_bias,
      t_rb, t_wgrad, (cols_mb + y_mb) / t_wgrad);
}
// Relative L2 error and worst element of C's block [0, rows) x [0, cols) (column-major, ldc m)
// against a double reference.
struct BlockError {
  double rel_l2, worst;
};
BlockError block_error(const DeviceBuffer& c, int m, const std::vector<double>& ref, int rows, int cols) {
  std::vector<float> got(std::size_t(m) * cols);
  CUDA_CHECK(cudaMemcpy(got.data(), c.data(), got.size() * 4, cudaMemcpyDeviceToHost));
  double num = 0, den = 0, worst = 0;
  for (int j = 0; j < cols; ++j)
    for (int i = 0; i < rows; ++i) {
      const double r = ref[std::size_t(j) * rows + i], d = got[std::size_t(j) * m + i] - r;
      num += d * d;
      den += r * r;
      worst = std::max(worst, std::abs(d) / (std::abs(r) + 1e-3));
    }
  return {std::sqrt(num / std::max(den, 1e-300)), worst};
}

// The fp32 GEMMs of conv2/3x3 (channels-last im2col convolution, the largest of the fp32 step)
// and of a 1x1 and a 3x3 inception layer
// under each cuBLAS math for fp32 operands: time, and accuracy against a double reference on a
// slice of the output. Strict fp32 (PEDANTIC, what incept runs) against plain COMPUTE_32F,
// TF32 and, from cuBLAS 12.9, BF16x9 emulation (three bf16 terms per value on tensor cores,
// strategy EAGER), to see whether any of them could run the fp32 step faster at fp32 accuracy.
// 3xTF32: A and B split into TF32 big + small parts (kernels::split_tf32), then
// C = As Bb + Ab Bs + Ab Bb as three TF32 GEMMs accumulating in fp32 (small terms first). Timed
// with and without the split passes (an im2col could write the split rows itself).
void report_3xtf32(cublasHandle_t h, cudaStream_t s, const char* name, cublasOperation_t ta,
                   cublasOperation_t tb, int m, int n, int k, DeviceBuffer& a, int lda, DeviceBuffer& b,
                   int ldb, DeviceBuffer& c, const std::vector<double>& ref, int rows, int cols,
                   double flops) {
  const std::size_t na = std::size_t(m) * k, nb = std::size_t(k) * n;
  DeviceBuffer ab(na * 4), as(na * 4), bb(nb * 4), bs(nb * 4);
#if CUBLAS_VERSION >= 120900
  CUBLAS_CHECK(cublasSetEmulationStrategy(h, CUBLAS_EMULATION_STRATEGY_DEFAULT));
#endif
  auto split = [&] {
    kernels::split_tf32(na, a.as<float>(), ab.as<float>(), as.as<float>(), s);
    kernels::split_tf32(nb, b.as<float>(), bb.as<float>(), bs.as<float>(), s);
  };
  auto gemms = [&] {
    const float one = 1.f, zero = 0.f;
    const DeviceBuffer* terms[3][2] = {{&as, &bb}, {&ab, &bs}, {&ab, &bb}};
    for (int t = 0; t < 3; ++t)
      CUBLAS_CHECK(cublasGemmEx(h, ta, tb, m, n, k, &one, terms[t][0]->data(), CUDA_R_32F, lda,
                                terms[t][1]->data(), CUDA_R_32F, ldb, t == 0 ? &zero : &one, c.data(),
                                CUDA_R_32F, m, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  };
  split();
  gemms();
  const float ms_all = time_ms(
      s,
      [&] {
        split();
        gemms();
      },
      2);
  const float ms_gemms = time_ms(s, gemms, 2);
  const BlockError e = block_error(c, m, ref, rows, cols);
  std::printf("%-36s %-24s %8.3f ms %6.1f TFLOP/s  error %.2e (worst %.2e); the 3 GEMMs alone %.3f ms\n",
              name, "3xTF32 (split + 3 GEMMs)", ms_all, flops / (ms_all * 1e9), e.rel_l2, e.worst, ms_gemms);
}

// incept's own 3xTF32 kernel (kernels/gemm_tf32x3_gpu.h): the split in registers, one pass.
void report_incept_tf32x3(cudaStream_t s, const char* name, cublasOperation_t ta, cublasOperation_t tb, int m,
                          int n, int k, DeviceBuffer& a, int lda, DeviceBuffer& b, int ldb, DeviceBuffer& c,
                          const std::vector<double>& ref, int rows, int cols, double flops) {
  kernels::GemmProblem p;
  p.trans_a = ta == CUBLAS_OP_T, p.trans_b = tb == CUBLAS_OP_T, p.m = m, p.n = n, p.k = k;
  p.a = a.as<float>(), p.lda = lda, p.b = b.as<float>(), p.ldb = ldb, p.c = c.as<float>(), p.ldc = m;
  if (!kernels::tf32x3_supported(p)) {
    std::printf("%-36s %-24s not supported here\n", name, "incept 3xTF32 kernel");
    return;
  }
  if (k > 8 * 8192) {  // the net never runs a weight gradient over all pixels in one GEMM
    std::printf("%-36s %-24s (sliced as the net runs it: next table)\n", name, "incept 3xTF32 kernel");
    return;
  }
  kernels::gemm_tf32x3(p, s);
  const float ms = time_ms(
      s, [&] { kernels::gemm_tf32x3(p, s); }, 2);
  const BlockError e = block_error(c, m, ref, rows, cols);
  std::printf("%-36s %-24s %8.3f ms %6.1f TFLOP/s  error %.2e (worst %.2e)\n", name, "incept 3xTF32 kernel",
              ms, flops / (ms * 1e9), e.rel_l2, e.worst);
}

void bench_fp32_gemm_math(cudaStream_t s, int nb) {
  struct Shape {
    const char* name;
    cublasOperation_t ta, tb;
    int m, n, k;
  };
  const int p = nb * 56 * 56, p28 = nb * 28 * 28, p14 = nb * 14 * 14;  // output pixels at 56, 28, 14
  const Shape shapes[] = {{"conv2/3x3 forward  [192 x P] k 576", CUBLAS_OP_T, CUBLAS_OP_N, 192, p, 576},
                          {"conv2/3x3 dgrad    [576 x P] k 192", CUBLAS_OP_N, CUBLAS_OP_N, 576, p, 192},
                          {"conv2/3x3 wgrad    [576 x 192] k P", CUBLAS_OP_N, CUBLAS_OP_T, 576, 192, p},
                          {"3a/1x1 forward     [64 x P28] k 192", CUBLAS_OP_T, CUBLAS_OP_N, 64, p28, 192},
                          {"3a/1x1 wgrad       [192 x 64] k P28", CUBLAS_OP_N, CUBLAS_OP_T, 192, 64, p28},
                          {"4d/3x3 forward   [288 x P14] k 1296", CUBLAS_OP_T, CUBLAS_OP_N, 288, p14, 1296},
                          {"4d/3x3 dgrad     [1296 x P14] k 288", CUBLAS_OP_N, CUBLAS_OP_N, 1296, p14, 288}};
  struct Math {
    const char* name;
    cublasComputeType_t ct;
    bool emulate;
  };
  std::vector<Math> maths = {{"PEDANTIC (strict)", CUBLAS_COMPUTE_32F_PEDANTIC, false},
                             {"COMPUTE_32F", CUBLAS_COMPUTE_32F, false},
                             {"FAST_TF32", CUBLAS_COMPUTE_32F_FAST_TF32, false}};
#if CUBLAS_VERSION >= 120900
  maths.push_back({"EMULATED_16BFX9 (eager)", CUBLAS_COMPUTE_32F_EMULATED_16BFX9, true});
#endif
  CublasHandle h = make_cublas();
  CUBLAS_CHECK(cublasSetStream(h, s));
  DeviceBuffer ws(std::size_t(32) << 20);
  CUBLAS_CHECK(cublasSetWorkspace(h, ws.data(), ws.bytes()));
  std::printf(
      "== fp32 GEMM maths, conv2/3x3 at batch %d (P = %d); error: relative L2 and worst element "
      "of a 64 x 64 output block against double\n",
      nb, p);
  for (const Shape& g : shapes) {
    const int lda = g.ta == CUBLAS_OP_N ? g.m : g.k, ldb = g.tb == CUBLAS_OP_N ? g.k : g.n;
    DeviceBuffer a(std::size_t(g.m) * g.k * 4), b(std::size_t(g.k) * g.n * 4), c(std::size_t(g.m) * g.n * 4);
    fill_random(a, DType::kF32, 11);
    fill_random(b, DType::kF32, 12);
    // Reference for the output block [0, rows) x [0, cols): C[i, j] = sum_l A(i, l) B(l, j),
    // column-major (a block, so the k = P weight gradient stays a few seconds on the host).
    const int rows = std::min(g.m, 64), cols = std::min(g.n, 64);
    std::vector<float> ha(std::size_t(g.m) * g.k), hb(std::size_t(g.k) * g.n);
    a.download(ha.data(), ha.size() * 4);
    b.download(hb.data(), hb.size() * 4);
    auto A = [&](int i, int l) {
      return double(g.ta == CUBLAS_OP_N ? ha[std::size_t(l) * lda + i] : ha[std::size_t(i) * lda + l]);
    };
    auto B = [&](int l, int j) {
      return double(g.tb == CUBLAS_OP_N ? hb[std::size_t(j) * ldb + l] : hb[std::size_t(l) * ldb + j]);
    };
    std::vector<double> ref(std::size_t(rows) * cols);
    for (int j = 0; j < cols; ++j)
      for (int i = 0; i < rows; ++i) {
        double acc = 0;
        for (int l = 0; l < g.k; ++l) acc += A(i, l) * B(l, j);
        ref[std::size_t(j) * rows + i] = acc;
      }
    const double flops = 2.0 * g.m * g.n * double(g.k);
    for (const Math& mt : maths) {
#if CUBLAS_VERSION >= 120900
      CUBLAS_CHECK(cublasSetEmulationStrategy(
          h, mt.emulate ? CUBLAS_EMULATION_STRATEGY_EAGER : CUBLAS_EMULATION_STRATEGY_DEFAULT));
#endif
      const float alpha = 1.f, beta = 0.f;
      auto run = [&] {
        return cublasGemmEx(h, g.ta, g.tb, g.m, g.n, g.k, &alpha, a.data(), CUDA_R_32F, lda, b.data(),
                            CUDA_R_32F, ldb, &beta, c.data(), CUDA_R_32F, g.m, mt.ct, CUBLAS_GEMM_DEFAULT);
      };
      if (const cublasStatus_t st = run(); st != CUBLAS_STATUS_SUCCESS) {
        std::printf("%-36s %-24s not supported here (%s)\n", g.name, mt.name, cublasGetStatusName(st));
        continue;
      }
      const float ms = time_ms(
          s, [&] { CUBLAS_CHECK(run()); }, 2);
      const BlockError e = block_error(c, g.m, ref, rows, cols);
      std::printf("%-36s %-24s %8.3f ms %6.1f TFLOP/s  error %.2e (worst %.2e)\n", g.name, mt.name, ms,
                  flops / (ms * 1e9), e.rel_l2, e.worst);
    }
    report_3xtf32(h, s, g.name, g.ta, g.tb, g.m, g.n, g.k, a, lda, b, ldb, c, ref, rows, cols, flops);
    report_incept_tf32x3(s, g.name, g.ta, g.tb, g.m, g.n, g.k, a, lda, b, ldb, c, ref, rows, cols, flops);
  }
}

const char* tile_name(kernels::Tf32x3Tile t) {
  switch (t) {
    case kernels::Tf32x3Tile::k64x128:
      return "64x128";
    case kernels::Tf32x3Tile::k128x128:
      return "128x128";
    case kernels::Tf32x3Tile::k32x128:
      return "32x128";
    case kernels::Tf32x3Tile::k16x128:
      return "16x128";
    case kernels::Tf32x3Tile::k128x32:
      return "128x32";
    case kernels::Tf32x3Tile::k64x64:
      return "64x64";
    default:
      return "auto";
  }
}

// The fp32 step's GEMMs as GpuFc runs them (weight gradients in batched slices), incept's 3xTF32
// kernel against strict cuBLAS on each: the per-GEMM comparison of RESULTS.md's session 12,
// then the kernel's time with each tile (C or C^T as the launcher orients it; the chosen one
// marked *), the data behind the tiles' speeds in kernels/gemm_tf32x3.cu.
void bench_tf32x3_shapes(cudaStream_t s, int nb) {
  struct Shape {
    const char* name;
    bool ta, tb;
    int m, n, k, batch;
  };
  const int p56 = nb * 56 * 56, p28 = nb * 28 * 28, p14 = nb * 14 * 14;
  const Shape shapes[] = {
      {"conv2/3x3 forward      TN 192 x P56, k 576", true, false, 192, p56, 576, 1},
      {"conv2/3x3 dgrad        NN 576 x P56, k 192", false, false, 576, p56, 192, 1},
      {"conv2/3x3 wgrad        NT 576 x 192, k P56/64 x 64", false, true, 576, 192, p56 / 64, 64},
      {"3b/3x3 forward         TN 192 x P28, k 1152", true, false, 192, p28, 1152, 1},
      {"3b/3x3 dgrad           NN 1152 x P28, k 192", false, false, 1152, p28, 192, 1},
      {"3b/3x3 wgrad           NT 1152 x 192, k P28/16 x 16", false, true, 1152, 192, p28 / 16, 16},
      {"3b/1x1 forward         TN 128 x P28, k 256", true, false, 128, p28, 256, 1},
      {"3b/1x1 wgrad           NT 256 x 128, k P28/128 x 128", false, true, 256, 128, p28 / 128, 128},
      {"3b/1x1 dgrad           NN 256 x P28, k 128", false, false, 256, p28, 128, 1},
      {"conv1 wgrad            NT 152 x 64, k P112/4/128 x 128", false, true, 152, 64, p56 / 128, 128},
      {"4d/3x3 forward         TN 288 x P14, k 1296", true, false, 288, p14, 1296, 1},
      {"4d/3x3 dgrad           NN 1296 x P14, k 288", false, false, 1296, p14, 288, 1},
      {"4d/1x1 forward         TN 112 x P14, k 512", true, false, 112, p14, 512, 1},
      {"3a/5x5_reduce forward  TN 16 x P28, k 192", true, false, 16, p28, 192, 1},
      {"3a/pool_proj forward   TN 32 x P28, k 192", true, false, 32, p28, 192, 1},
      {"3a/5x5 forward         TN 32 x P28, k 400", true, false, 32, p28, 400, 1},
      {"3a/5x5 dgrad (flipped) TN 16 x P28, k 800", true, false, 16, p28, 800, 1},
      {"3a/5x5 wgrad           NT 400 x 32, k P28/16 x 16", false, true, 400, 32, p28 / 16, 16},
      {"3b/5x5 dgrad (flipped) TN 32 x P28, k 2400", true, false, 32, p28, 2400, 1},
      {"4b/5x5_reduce forward  TN 24 x P14, k 512", true, false, 24, p14, 512, 1},
      {"4b/5x5 dgrad (flipped) TN 24 x P14, k 1600", true, false, 24, p14, 1600, 1},
      {"4b/5x5 wgrad           NT 600 x 64, k P14/8 x 8", false, true, 600, 64, p14 / 8, 8},
      {"4c/1x1 wgrad           NT 512 x 128, k P14/32 x 32", false, true, 512, 128, p14 / 32, 32},
      {"4e/5x5_reduce wgrad    NT 528 x 32, k P14/32 x 32", false, true, 528, 32, p14 / 32, 32},
      {"5b/5x5_reduce forward  TN 48 x P7, k 832", true, false, 48, p14 / 4, 832, 1}};
  CublasHandle h = make_cublas();
  CUBLAS_CHECK(cublasSetStream(h, s));
  DeviceBuffer ws(std::size_t(32) << 20);
  CUBLAS_CHECK(cublasSetWorkspace(h, ws.data(), ws.bytes()));
  std::printf("== 3xTF32 kernel vs strict cuBLAS on the fp32 step's GEMMs (batch %d)\n", nb);
  double ours_total = 0, cublas_total = 0;
  for (const Shape& g : shapes) {
    kernels::GemmProblem p;
    p.trans_a = g.ta, p.trans_b = g.tb, p.m = g.m, p.n = g.n, p.k = g.k, p.batch = g.batch;
    p.lda = g.ta ? g.k : g.m, p.ldb = g.tb ? g.n : g.k, p.ldc = g.m;
    p.stride_a = static_cast<long long>(g.m) * g.k, p.stride_b = static_cast<long long>(g.k) * g.n;
    p.stride_c = static_cast<long long>(g.m) * g.n;
    DeviceBuffer a(p.stride_a * g.batch * 4), b(p.stride_b * g.batch * 4), c(p.stride_c * g.batch * 4);
    fill_random(a, DType::kF32, 31);
    fill_random(b, DType::kF32, 32);
    p.a = a.as<float>(), p.b = b.as<float>(), p.c = c.as<float>();
    const float one = 1.f, zero = 0.f;
    const float t_cublas = time_ms(s, [&] {
      CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          h, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &one,
          a.data(), CUDA_R_32F, p.lda, p.stride_a, b.data(), CUDA_R_32F, p.ldb, p.stride_b, &zero, c.data(),
          CUDA_R_32F, p.ldc, p.stride_c, g.batch, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
    });
    const double tf = 2.0 * g.m * g.n * double(g.k) * g.batch * 1e-9;
    cublas_total += t_cublas;
    if (!kernels::tf32x3_supported(p)) {
      ours_total += t_cublas;
      std::printf("%-52s 3xTF32: not supported | cuBLAS strict %7.3f ms %5.1f TF/s\n", g.name, t_cublas,
                  tf / t_cublas);
      continue;
    }
    const float t_ours = time_ms(s, [&] { kernels::gemm_tf32x3(p, s); });
    ours_total += t_ours;
    bool transposed = false;
    const kernels::Tf32x3Tile chosen = kernels::tf32x3_tile(p, &transposed);
    std::printf("%-52s 3xTF32 %7.3f ms %5.1f TF/s%s | cuBLAS strict %7.3f ms %5.1f TF/s | %.2fx\n", g.name,
                t_ours, tf / t_ours, kernels::tf32x3_preferred(p) ? "" : " (not preferred)", t_cublas,
                tf / t_cublas, t_cublas / t_ours);
    std::printf("    tiles (ms, TF/s; ^T: runs C^T):");
    for (const kernels::Tf32x3Tile t :
         {kernels::Tf32x3Tile::k64x128, kernels::Tf32x3Tile::k128x128, kernels::Tf32x3Tile::k32x128,
          kernels::Tf32x3Tile::k16x128, kernels::Tf32x3Tile::k128x32, kernels::Tf32x3Tile::k64x64}) {
      kernels::GemmProblem q = p;
      q.tile = t;
      if (!kernels::tf32x3_supported(q)) continue;
      bool tr = false;
      kernels::tf32x3_tile(q, &tr);
      const float ms = time_ms(s, [&] { kernels::gemm_tf32x3(q, s); });
      std::printf(" %s%s%s %.3f (%.1f)", tile_name(t), tr ? "^T" : "",
                  t == chosen && tr == transposed ? "*" : "", ms, tf / ms);
    }
    std::printf("\n");
  }
  std::printf("all: 3xTF32 %.3f ms, cuBLAS strict %.3f ms: %.2fx\n", ours_total, cublas_total,
              cublas_total / ours_total);
}

// --winograd: each 3x3 layer of GoogLeNet in fp32 with FMA arithmetic only, as the strict fp32
// step runs it (im2col rows + strict cuBLAS GEMMs + col2im, rows rebuilt for the weight gradient)
// against F(2x2, 3x3) Winograd (engine/winograd_conv.h: transforms + 16 strict cuBLAS GEMMs).
void bench_winograd(cudaStream_t s, int nb) {
  CublasHandle h = make_cublas();
  CUBLAS_CHECK(cublasSetStream(h, s));
  DeviceBuffer cublas_ws(std::size_t(64) << 20);
  CUBLAS_CHECK(cublasSetWorkspace(h, cublas_ws.data(), cublas_ws.bytes()));
  const int sms = kernels::sm_count();
  std::printf(
      "== fp32 3x3 convolutions, FMA only: im2col + strict cuBLAS vs Winograd F(2x2,3x3), batch %d, ms\n",
      nb);
  std::printf("%-22s %26s | %26s | %6s %5s %9s\n", "layer", "im2col fwd / dgrad / wgrad",
              "Winograd fwd / dgrad / wgrad", "ratio", "parts", "ws MiB");
  double tot_g = 0, tot_w = 0;
  for (const ConvSpec& cs : googlenet_convs()) {
    if (cs.r != 3) continue;
    ConvGeom g;
    g.num_output = cs.k, g.kernel_h = g.kernel_w = 3, g.pad_h = g.pad_w = 1;
    const Nchw xs{nb, cs.c, cs.h, cs.h}, ys{nb, cs.k, cs.h, cs.h, std::int64_t(cs.y_total) * cs.h * cs.h};
    const std::size_t pix = std::size_t(nb) * cs.h * cs.h;
    const int taps = 9 * cs.c;
    DeviceBuffer x(pix * cs.c * 4), dx(pix * cs.c * 4), y(pix * cs.y_total * 4),
        w(std::size_t(cs.k) * taps * 4), dw(std::size_t(cs.k) * taps * 4);
    fill_random(x, DType::kF32, 21);
    fill_random(y, DType::kF32, 22);
    fill_random(w, DType::kF32, 23);
    dw.fill_bytes(0);
    float* yp = y.as<float>() + cs.y_c0;
    // the strict step's path
    GpuFc fc(FcShape{int(pix), taps, cs.k, taps, cs.y_total}, DType::kF32);
    DeviceBuffer cols(pix * taps * 4), partial(std::max<std::size_t>(fc.wgrad_partial_elems(), 1) * 4);
    const float g_f = time_ms(s, [&] {
      kernels::im2col_nhwc<float>(xs, x.as<float>(), g, taps, cols.as<float>(), s);
      fc.forward(h, cols.data(), w.data(), nullptr, false, yp);
    });
    const float g_d = time_ms(s, [&] {
      fc.backward_data(h, yp, w.data(), cols.data(), false);
      kernels::col2im_nhwc<float>(xs, cols.as<float>(), g, taps, dx.as<float>(), false, s);
    });
    const float g_w = time_ms(s, [&] {
      kernels::im2col_nhwc<float>(xs, x.as<float>(), g, taps, cols.as<float>(), s);
      fc.backward_filter(h, cols.data(), yp, dw.data(), nullptr, partial.as<float>());
    });
    // Winograd
    WinogradConv conv(xs, ys, sms);
    DeviceBuffer ws(conv.workspace_bytes());
    const float w_f =
        time_ms(s, [&] { conv.forward(h, x.as<float>(), w.as<float>(), nullptr, false, yp, ws.data()); });
    const float w_d =
        time_ms(s, [&] { conv.backward_data(h, yp, w.as<float>(), dx.as<float>(), false, ws.data()); });
    const float w_w =
        time_ms(s, [&] { conv.backward_filter(h, x.as<float>(), yp, dw.as<float>(), ws.data()); });
    const double gt = g_f + g_d + g_w, wt = w_f + w_d + w_w;
    tot_g += gt, tot_w += wt;
    std::printf("%-22s %8.3f %8.3f %8.3f | %8.3f %8.3f %8.3f | %5.2fx %5d %9.0f\n", cs.name.c_str(), g_f, g_d,
                g_w, w_f, w_d, w_w, gt / wt, conv.weight_grad_parts(), conv.workspace_bytes() / 1048576.0);
  }
  std::printf(
      "all 3x3 layers: im2col + strict cuBLAS %.3f ms, Winograd %.3f ms (%.2fx), saving %.3f ms a step\n",
      tot_g, tot_w, tot_g / tot_w, tot_g - tot_w);
  // The transforms alone at conv2/3x3's shape (memory-bound: bytes read + written)
  const Ceilings c = measure_ceilings(s, DType::kF32);
  const Nchw xs{nb, 64, 56, 56}, ys{nb, 192, 56, 56};
  const std::int64_t rows = winograd_tiles(nb, 56, 56);
  DeviceBuffer x(xs.count() * 4), y(ys.count() * 4), v(16 * std::size_t(rows) * 64 * 4),
      m(16 * std::size_t(rows) * 192 * 4);
  fill_random(x, DType::kF32, 31);
  fill_random(m, DType::kF32, 32);
  auto gbs = [&](double bytes, float ms) { return bytes / (ms * 1e6); };
  const float t_in = time_ms(s, [&] { kernels::winograd_inputs(xs, x.as<float>(), rows, v.as<float>(), s); });
  const float t_out = time_ms(s, [&] {
    kernels::winograd_outputs(m.as<float>(), rows, nullptr, false, ys, y.as<float>(), false, s);
  });
  const float t_og =
      time_ms(s, [&] { kernels::winograd_output_grads(ys, y.as<float>(), rows, m.as<float>(), s); });
  const double bx = xs.count() * 4.0, by = ys.count() * 4.0;
  std::printf(
      "conv2/3x3 transforms (copy ceiling %.0f GB/s): inputs %.3f ms %.0f GB/s, outputs %.3f ms %.0f GB/s, "
      "output gradients %.3f ms %.0f GB/s\n",
      c.copy_gbs, t_in, gbs(5 * bx, t_in), t_out, gbs(5 * by, t_out), t_og, gbs(5 * by, t_og));
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Per-kernel GPU benchmark at GoogLeNet's shapes"};
  int batch = 128;
  std::string dtypes = "fp32,bf16";
  bool skip_conv = false;
  app.add_option("--batch", batch, "batch size");
  app.add_option("--samples", g_samples, "timed samples per kernel (median reported, >= 20)");
  app.add_option("--dtype", dtypes, "fp32,bf16");
  app.add_flag("--skip-conv", skip_conv, "hand-written kernels only");
  bool gemm_math = false, winograd = false;
  app.add_flag("--fp32-gemm-math", gemm_math,
               "only this: conv2/3x3's fp32 GEMMs under each cuBLAS math (strict, 32F, TF32, BF16x9 "
               "emulation), time and error against double");
  app.add_flag("--winograd", winograd,
               "only this: GoogLeNet's 3x3 layers in fp32 with FMA only, im2col + strict cuBLAS against "
               "Winograd F(2x2,3x3)");
  CLI11_PARSE(app, argc, argv);
  if (gpu_count() == 0) {
    std::fprintf(stderr, "bench_kernels: %s\n", no_gpu_reason().c_str());
    return 1;
  }
  g_samples = std::max(g_samples, 20);
  std::printf("GPU: %s  batch %d  samples %d (median)\n", describe_gpu(0).c_str(), batch, g_samples);
  Stream s = make_stream();
  if (winograd) {
    bench_winograd(s, batch);
    return 0;
  }
  if (gemm_math) {
    bench_fp32_gemm_math(s, batch);
    bench_tf32x3_shapes(s, batch);
    return 0;
  }
  for (const char* dn : {"fp32", "bf16"}) {
    if (dtypes.find(dn) == std::string::npos) continue;
    const DType t = std::string(dn) == "fp32" ? DType::kF32 : DType::kBF16;
    const Ceilings c = measure_ceilings(s, t);
    std::printf("== %s: ceilings: copy %.0f GB/s (read+write), cuBLAS GEMM 8192^3 %.1f TFLOP/s\n", dn,
                c.copy_gbs, c.gemm_tflops);
    if (t == DType::kF32)
      bench_hand_written<float>(s, batch, c), bench_sgd(s, c);
    else
      bench_hand_written<bf16>(s, batch, c), bench_conv1_im2col<bf16>(s, batch);
    if (!skip_conv) {
      bench_convs(s, batch, t, false, c);
      bench_convs(s, batch, t, true, c);
    }
  }
  return 0;
}

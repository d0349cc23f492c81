// The F(2x2, 3x3) Winograd convolution on the GPU: every transform kernel (kernels/winograd_gpu.h)
// bit for bit against its CPU reference (kernels/winograd_ref.h; both use winograd_tile.h's
// formulas), on the float4 and the scalar path, into concat slices, with poisoned outputs; and
// WinogradConv (engine/winograd_conv.h, cuBLAS strict fp32 GEMMs) forward, data gradient and
// filter gradient against the direct convolution in double at GoogLeNet's inception shapes,
// within the error of strict cuBLAS's im2col GEMM on the same problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "engine/check.h"
#include "engine/gpu_fc.h"
#include "engine/owners.h"
#include "engine/winograd_conv.h"
#include "gpu_test_data.h"
#include "kernels/device_facts.h"
#include "kernels/im2col_gpu.h"
#include "kernels/winograd_gpu.h"
#include "kernels/winograd_ref.h"
#include "testing/conv3x3_direct.h"

namespace incept {
namespace {

using namespace gputest;
using testing::Conv3x3Shape;
using testing::random_floats;
using testing::rel_l2;

struct TransformCase {
  int n, h, w, c, k, y_total, y_c0;  // output (or input-gradient) k channels into a concat slice
};

class GpuWinogradTransforms : public ::testing::TestWithParam<TransformCase> {};

TEST_P(GpuWinogradTransforms, EqualTheCpuReferenceBitwise) {
  INCEPT_REQUIRE_GPU();
  const TransformCase tc = GetParam();
  const std::int64_t tiles = winograd_tiles(tc.n, tc.h, tc.w), rows = tiles + 5;
  const std::size_t pix = std::size_t(tc.n) * tc.h * tc.w;
  // filters, both kinds
  const auto w = random_floats(std::size_t(tc.k) * 9 * tc.c, fresh_seed("wino w"));
  DeviceBuffer dw = upload<float>(w);
  for (const bool data_grad : {false, true}) {
    std::vector<float> want(16 * std::size_t(tc.k) * tc.c);
    ref::winograd_filters(tc.k, tc.c, w.data(), data_grad, want.data());
    DeviceBuffer du = poisoned<float>(want.size());
    kernels::winograd_filters(tc.k, tc.c, dw.as<float>(), data_grad, du.as<float>(), nullptr);
    EXPECT_EQ(download<float>(du, want.size()), want) << "filters, data_grad " << data_grad;
  }
  // inputs: a dense x of c channels
  const Nchw xs{tc.n, tc.c, tc.h, tc.w};
  const auto x = random_floats(pix * tc.c, fresh_seed("wino x"));
  DeviceBuffer dx = upload<float>(x);
  {
    std::vector<float> want(16 * std::size_t(rows) * tc.c);
    ref::winograd_inputs(xs, x.data(), rows, want.data());
    DeviceBuffer dv = poisoned<float>(want.size());
    kernels::winograd_inputs(xs, dx.as<float>(), rows, dv.as<float>(), nullptr);
    EXPECT_EQ(download<float>(dv, want.size()), want) << "inputs";
  }
  // outputs and output gradients: k channels in a slice of y_total
  const Nchw ys{tc.n, tc.k, tc.h, tc.w, std::int64_t(tc.y_total) * tc.h * tc.w};
  const auto parent = random_floats(pix * tc.y_total, fresh_seed("wino y"));
  const auto m = random_floats(16 * std::size_t(rows) * tc.k, fresh_seed("wino m"));
  const auto bias = random_floats(tc.k, fresh_seed("wino b"));
  DeviceBuffer dm = upload<float>(m), db = upload<float>(bias);
  for (const bool accumulate : {false, true})
    for (const bool relu : {false, true}) {
      std::vector<float> want = parent;
      ref::winograd_outputs(m.data(), rows, relu ? bias.data() : nullptr, relu, ys, want.data() + tc.y_c0,
                            accumulate);
      DeviceBuffer dy = upload<float>(parent);
      kernels::winograd_outputs(dm.as<float>(), rows, relu ? db.as<float>() : nullptr, relu, ys,
                                dy.as<float>() + tc.y_c0, accumulate, nullptr);
      EXPECT_EQ(download<float>(dy, parent.size()), want)
          << "outputs, accumulate " << accumulate << " relu " << relu;
    }
  {
    DeviceBuffer dy = upload<float>(parent);
    std::vector<float> want(16 * std::size_t(rows) * tc.k);
    ref::winograd_output_grads(ys, parent.data() + tc.y_c0, rows, want.data());
    DeviceBuffer dz = poisoned<float>(want.size());
    kernels::winograd_output_grads(ys, dy.as<float>() + tc.y_c0, rows, dz.as<float>(), nullptr);
    EXPECT_EQ(download<float>(dz, want.size()), want) << "output gradients";
  }
  for (const int parts : {1, 3}) {
    const auto s = random_floats(16 * std::size_t(parts) * tc.k * tc.c, fresh_seed("wino s"));
    std::vector<float> want = w;
    ref::winograd_filter_grads(tc.k, tc.c, parts, s.data(), want.data());
    DeviceBuffer ds = upload<float>(s), dgw = upload<float>(w);
    kernels::winograd_filter_grads(tc.k, tc.c, parts, ds.as<float>(), dgw.as<float>(), nullptr);
    EXPECT_EQ(download<float>(dgw, w.size()), want) << "filter gradients, parts " << parts;
  }
  CUDA_CHECK(cudaDeviceSynchronize());
}

// float4 (channels, strides and slice offsets multiples of 4) and scalar (odd ones) paths
INSTANTIATE_TEST_SUITE_P(Views, GpuWinogradTransforms,
                         ::testing::Values(TransformCase{2, 7, 9, 20, 24, 64, 16},
                                           TransformCase{3, 14, 14, 96, 208, 512, 192},
                                           TransformCase{2, 5, 6, 6, 10, 17, 3}));

// WinogradConv at an inception shape against double, beside strict cuBLAS's im2col GEMM (the
// path it replaces) on the same data.
struct ConvCase {
  const char* name;
  Conv3x3Shape s;
  int y_total, y_c0;
};

class GpuWinogradConv : public ::testing::TestWithParam<ConvCase> {};

TEST_P(GpuWinogradConv, MatchesDirectWithinStrictGemmError) {
  INCEPT_REQUIRE_GPU();
  const ConvCase cc = GetParam();
  const Conv3x3Shape s = cc.s;
  const std::size_t pix = std::size_t(s.n) * s.h * s.w;
  const auto x = random_floats(s.x_count(), fresh_seed("wconv x"), 0.f, 1.f);  // after a ReLU
  const auto w = random_floats(s.w_count(), fresh_seed("wconv w"), -0.05f, 0.05f);
  const auto dy = random_floats(s.y_count(), fresh_seed("wconv dy"), -1.f, 1.f);
  const auto want_y = testing::conv3x3_fwd<double>(s, x, w);
  const auto want_dx = testing::conv3x3_bwd_data<double>(s, dy, w);
  const auto want_dw = testing::conv3x3_bwd_filter<double>(s, x, dy);

  const Nchw xs{s.n, s.c, s.h, s.w}, ys{s.n, s.k, s.h, s.w, std::int64_t(cc.y_total) * s.h * s.w};
  WinogradConv conv(xs, ys, kernels::sm_count());
  DeviceBuffer ws(conv.workspace_bytes());
  CublasHandle h = make_cublas();
  DeviceBuffer dxb = upload<float>(x), dwb = upload<float>(w);
  // dy lives in its slice of the concat gradient; the other channels are poison
  std::vector<float> dy_parent(pix * cc.y_total, NAN);
  for (std::size_t p = 0; p < pix; ++p)
    for (int k = 0; k < s.k; ++k) dy_parent[p * cc.y_total + cc.y_c0 + k] = dy[p * s.k + k];
  DeviceBuffer ddy = upload<float>(dy_parent);

  DeviceBuffer dy_out = poisoned<float>(pix * cc.y_total);
  conv.forward(h, dxb.as<float>(), dwb.as<float>(), nullptr, false, dy_out.as<float>() + cc.y_c0, ws.data());
  DeviceBuffer dxg = poisoned<float>(s.x_count());
  conv.backward_data(h, ddy.as<float>() + cc.y_c0, dwb.as<float>(), dxg.as<float>(), false, ws.data());
  DeviceBuffer dwg(s.w_count() * 4);
  dwg.fill_bytes(0);
  conv.backward_filter(h, dxb.as<float>(), ddy.as<float>() + cc.y_c0, dwg.as<float>(), ws.data());
  CUDA_CHECK(cudaDeviceSynchronize());
  const auto y_parent = download<float>(dy_out, pix * cc.y_total);
  std::vector<float> y(s.y_count());
  for (std::size_t p = 0; p < pix; ++p)
    for (int k = 0; k < s.k; ++k) y[p * s.k + k] = y_parent[p * cc.y_total + cc.y_c0 + k];
  const double e_fwd = rel_l2(y, want_y), e_dx = rel_l2(download<float>(dxg, s.x_count()), want_dx),
               e_dw = rel_l2(download<float>(dwg, s.w_count()), want_dw);

  // strict cuBLAS im2col GEMMs on the same problems (dense output): the error to stay near
  const int taps = 9 * s.c;
  GpuFc fc(FcShape{int(pix), taps, s.k, taps, s.k}, kernels::DType::kF32);
  DeviceBuffer cols(pix * taps * 4), gy(s.y_count() * 4), gdw(s.w_count() * 4), gdx(s.x_count() * 4),
      ddy_dense = upload<float>(dy), partial(std::max<std::size_t>(fc.wgrad_partial_elems(), 1) * 4);
  ConvGeom g;
  g.num_output = s.k, g.kernel_h = g.kernel_w = 3, g.pad_h = g.pad_w = 1;
  kernels::im2col_nhwc<float>(xs, dxb.as<float>(), g, taps, cols.as<float>(), nullptr);
  fc.forward(h, cols.data(), dwb.data(), nullptr, false, gy.data());
  gdw.fill_bytes(0);
  fc.backward_filter(h, cols.data(), ddy_dense.data(), gdw.data(), nullptr, partial.as<float>());
  fc.backward_data(h, ddy_dense.data(), dwb.data(), cols.data(), false);
  kernels::col2im_nhwc<float>(xs, cols.as<float>(), g, taps, gdx.as<float>(), false, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const double g_fwd = rel_l2(download<float>(gy, s.y_count()), want_y),
               g_dx = rel_l2(download<float>(gdx, s.x_count()), want_dx),
               g_dw = rel_l2(download<float>(gdw, s.w_count()), want_dw);
  std::printf(
      "%s (%d parts): rel L2 error Winograd / strict GEMM: forward %.3g / %.3g, data gradient %.3g / "
      "%.3g, filter gradient %.3g / %.3g\n",
      cc.name, conv.weight_grad_parts(), e_fwd, g_fwd, e_dx, g_dx, e_dw, g_dw);
  // within 3x the strict GEMM's error (and fp32's scale)
  report("Winograd forward vs double", e_fwd, std::max(3 * g_fwd, 1e-6));
  report("Winograd data gradient vs double", e_dx, std::max(3 * g_dx, 1e-6));
  report("Winograd filter gradient vs double", e_dw, std::max(3 * g_dw, 1e-6));

  // every poisoned element outside the slice stays poison; the data gradient accumulates
  for (std::size_t p = 0; p < pix; ++p)
    for (int c = 0; c < cc.y_total; ++c) {
      if (c < cc.y_c0 || c >= cc.y_c0 + s.k) {
        ASSERT_TRUE(std::isnan(y_parent[p * cc.y_total + c])) << p << " " << c;
      }
    }
  conv.backward_data(h, ddy.as<float>() + cc.y_c0, dwb.as<float>(), dxg.as<float>(), true, ws.data());
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> twice(want_dx.size());
  for (std::size_t i = 0; i < twice.size(); ++i) twice[i] = 2 * want_dx[i];
  report("Winograd data gradient, accumulated twice", rel_l2(download<float>(dxg, s.x_count()), twice),
         std::max(3 * g_dx, 1e-6));
}

// GoogLeNet's 3x3 layers at a small batch: conv2/3x3 (56x56), 3b (28x28, into its concat
// slice), 4d (14x14) and 5b (7x7: odd, a half-empty last tile)
INSTANTIATE_TEST_SUITE_P(GoogLeNet, GpuWinogradConv,
                         ::testing::Values(ConvCase{"conv2/3x3", {2, 56, 56, 64, 192}, 192, 0},
                                           ConvCase{"3b/3x3", {2, 28, 28, 128, 192}, 480, 128},
                                           ConvCase{"4d/3x3", {4, 14, 14, 144, 288}, 528, 112},
                                           ConvCase{"5b/3x3", {4, 7, 7, 192, 384}, 1024, 384}));

}  // namespace
}  // namespace incept

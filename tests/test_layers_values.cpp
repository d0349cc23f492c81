// Known answers of the CPU references where a gradient check cannot tell: Caffe's pooling
// output sizes and AVE divisors, the accuracy tie rule, the dropout hash (fixed values that
// the GPU must reproduce), softmax loss, LRN, the SGD update, the input transform, and the
// im2col convolution against a direct loop in float.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/layers.h"
#include "kernels/conv_ref.h"
#include "kernels/dropout_ref.h"
#include "kernels/im2col_ref.h"
#include "kernels/layout.h"
#include "kernels/lrn_ref.h"
#include "kernels/pool_ref.h"
#include "kernels/sgd_ref.h"
#include "kernels/softmax_ref.h"
#include "kernels/transform_ref.h"
#include "testing/test_util.h"

namespace incept {
namespace {

TEST(PoolValues, CaffeCeilSizes) {
  EXPECT_EQ(pool_out_dim(112, 3, 2, 0), 56);  // pool1 (floor would give 55)
  EXPECT_EQ(pool_out_dim(56, 3, 2, 0), 28);
  EXPECT_EQ(pool_out_dim(28, 3, 2, 0), 14);
  EXPECT_EQ(pool_out_dim(14, 3, 2, 0), 7);
  EXPECT_EQ(pool_out_dim(14, 5, 3, 0), 4);   // aux heads
  EXPECT_EQ(pool_out_dim(28, 3, 1, 1), 28);  // inception pool branch
  EXPECT_EQ(pool_out_dim(4, 3, 2, 1), 3);
  EXPECT_EQ(pool_out_dim(5, 2, 2, 1), 3);  // (5+2-2)/2 ceil = 3 -> 4, last starts in pad -> 3
}

TEST(PoolValues, AveDivisorCountsPaddingButNotOverhang) {
  const Nchw xs{1, 1, 4, 4};
  std::vector<double> x(16, 1.0);
  PoolGeom g{PoolMethod::kAve, 3, 3, 2, 2, 1, 1, false};
  const Nchw ys = pool_out_shape(xs, g);
  ASSERT_EQ(ys.h, 3);
  std::vector<double> y(9);
  ref::pool_fwd(xs, x.data(), g, ys, y.data());
  EXPECT_DOUBLE_EQ(y[0], 4.0 / 9.0);  // 2x2 of the image in a 3x3 window (pad counts)
  EXPECT_DOUBLE_EQ(y[2], 2.0 / 6.0);  // last column: window 3 x (min(6, 4+1) - 3) = 3x2
  EXPECT_DOUBLE_EQ(y[8], 1.0 / 4.0);
}

TEST(PoolValues, MaxFirstMaximumWinsAndMaskMatches) {
  const Nchw xs{1, 1, 2, 3};
  std::vector<float> x{1, 5, 5, 2, 0, 5};
  PoolGeom g{PoolMethod::kMax, 2, 2, 1, 1, 0, 0, false};
  const Nchw ys = pool_out_shape(xs, g);
  std::vector<float> y(ys.count());
  std::vector<std::int32_t> mask(ys.count());
  ref::pool_fwd(xs, x.data(), g, ys, y.data(), mask.data());
  EXPECT_EQ(y[0], 5.f);
  EXPECT_EQ(mask[0], 1);
  EXPECT_EQ(mask[1], 1);  // ties: the first in scan order
  std::vector<float> dy{1.f, 10.f}, dx1(6), dx2(6);
  ref::pool_bwd(xs, x.data(), g, ys, dy.data(), mask.data(), dx1.data());
  ref::pool_bwd(xs, x.data(), g, ys, dy.data(), nullptr, dx2.data());
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dx1[1], 11.f);
}

TEST(AccuracyValues, TiesCountAgainstTheTrueClass) {
  const Nchw xs{2, 3, 1, 1};
  std::vector<float> x{1, 1, 0, 0.2f, 0.5f, 0.1f};
  std::vector<std::int32_t> label{1, 1};
  EXPECT_FLOAT_EQ(ref::accuracy(xs, x.data(), label.data(), 1), 0.5f);  // tie at the top: wrong
  EXPECT_FLOAT_EQ(ref::accuracy(xs, x.data(), label.data(), 2), 1.0f);
}

TEST(SoftmaxLossValues, UniformScoresGiveLogClasses) {
  const Nchw xs{2, 5, 1, 1};
  std::vector<double> x(10, 0.3), prob(10), dx(10);
  std::vector<std::int32_t> label{0, 4};
  EXPECT_NEAR(ref::softmax_loss_fwd(xs, x.data(), label.data(), prob.data()), std::log(5.0), 1e-12);
  ref::softmax_loss_bwd(xs, prob.data(), label.data(), 0.3, dx.data());
  EXPECT_NEAR(dx[0], 0.3 * (0.2 - 1.0) / 2, 1e-12);  // loss_weight / batch, normalization VALID
  EXPECT_NEAR(dx[1], 0.3 * 0.2 / 2, 1e-12);
}

TEST(LrnValues, SingleChannelFormula) {
  const Nchw xs{1, 1, 1, 1};
  std::vector<double> x{2.0}, y(1), scale(1);
  LrnGeom g{5, 1e-4f, 0.75f, 1.f};
  ref::lrn_fwd(xs, x.data(), g, xs, y.data(), scale.data());
  const double s = 1.0 + double(1e-4f) / 5 * 4.0;  // alpha divided by local_size
  EXPECT_NEAR(scale[0], s, 1e-15);
  EXPECT_NEAR(y[0], 2.0 * std::pow(s, -0.75), 1e-15);
}

TEST(DropoutValues, HashIsFixedAndRateIsRight) {
  // splitmix64's published first output for state 0; the GPU must produce the same bits.
  EXPECT_EQ(ref::splitmix64(0), 0xE220A8397B1DCDAFull);
  const std::uint64_t stream = ref::dropout_stream(1, 2, 3);
  EXPECT_EQ(stream, ref::splitmix64(1) ^ ref::splitmix64((2ull << 20) | 3));
  int kept = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) kept += ref::dropout_keep(stream, i, 0.7f);
  EXPECT_NEAR(double(kept) / n, 0.3, 0.005);
  // Different steps and layers give different masks.
  int same = 0;
  const std::uint64_t other = ref::dropout_stream(1, 3, 3);
  for (int i = 0; i < 1000; ++i)
    same += ref::dropout_keep(stream, i, 0.5f) == ref::dropout_keep(other, i, 0.5f);
  EXPECT_LT(same, 600);
  const Nchw s{2, 4, 1, 1};
  std::vector<float> x(8, 1.f), y(8);
  ref::dropout_fwd(s, x.data(), 0.4f, {1, 2, 3}, y.data());
  for (int i = 0; i < 8; ++i)
    EXPECT_FLOAT_EQ(y[i], ref::dropout_keep(stream, i, 0.4f) ? 1.f / 0.6f : 0.f) << i;
}

// The Dropout layer of a shard of a bigger batch (first_sample) keeps the masks of those images
// in the whole batch, forward and backward, as kernels/dropout_ref.h and the GPU do.
TEST(DropoutValues, LayerKeysMasksByFirstSample) {
  const Nchw whole{4, 3, 2, 2}, half{2, 3, 2, 2};
  const std::vector<float> x = testing::random_floats(std::size_t(whole.count()), 3, 0.5f, 1.5f);
  std::vector<float> ref_y(x.size());
  ref::dropout_fwd(whole, x.data(), 0.5f, {1, 2, 3, 0}, ref_y.data());
  LayerArgs<float> a;
  a.in_shape = {half};
  a.out_shape = {half};
  std::vector<float> y(std::size_t(half.count())), dx(y.size());
  a.in = {x.data() + half.count()};
  a.out = {y.data()};
  a.in_diff = {dx.data()};
  a.out_diff = {x.data() + half.count()};
  a.accumulate = {0};
  a.dropout_key = {1, 2, 3, 2};
  const LayerParams p = DropoutParams{0.5f};
  forward_ref(p, a);
  backward_ref(p, a);
  for (std::size_t i = 0; i < y.size(); ++i) {
    EXPECT_EQ(y[i], ref_y[half.count() + i]) << i;
    EXPECT_EQ(dx[i], ref_y[half.count() + i]) << i;
  }
}

TEST(SgdValues, CaffeUpdateRule) {
  std::vector<double> w{1.0, -2.0}, g{0.5, 0.1}, v{0.1, 0.0};
  ref::sgd_update<double>(2, 0.01, 0.9, 1e-4, w.data(), g.data(), v.data());
  const double v0 = 0.9 * 0.1 + 0.01 * (0.5 + 1e-4 * 1.0);
  EXPECT_DOUBLE_EQ(v[0], v0);
  EXPECT_DOUBLE_EQ(w[0], 1.0 - v0);
  EXPECT_DOUBLE_EQ(w[1], -2.0 - 0.01 * (0.1 + 1e-4 * -2.0));
}

TEST(TransformValues, CropMirrorMeanScale) {
  // 2 channels, 3x4 HWC image: pixel (y, x, c) = 10*y + x + 100*c.
  const int c = 2, h = 3, w = 4;
  std::vector<std::uint8_t> img(c * h * w);
  std::vector<float> mean(c * h * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ci = 0; ci < c; ++ci) {
        img[(y * w + x) * c + ci] = std::uint8_t(10 * y + x + 100 * ci);
        mean[(ci * h + y) * w + x] = float(x);  // the mean at the SOURCE pixel
      }
  ref::TransformParams p;
  p.crop_h = p.crop_w = 2;
  p.y0 = 1;
  p.x0 = 2;
  p.mirror = true;
  p.scale = 0.5f;
  p.mean_image = mean.data();
  std::vector<float> out(c * 4);
  ref::transform_image(img.data(), ref::PixelLayout::kHwc, c, h, w, p, out.data());
  // out(c, y, 1 - x) = (img(1 + y, 2 + x, c) - (2 + x)) * 0.5
  EXPECT_FLOAT_EQ(out[0], (10.f + 3 - 3) * 0.5f);  // c0 y0 ox0 <- x=1: pixel 13, mean 3
  EXPECT_FLOAT_EQ(out[1], (10.f + 2 - 2) * 0.5f);
  EXPECT_FLOAT_EQ(out[4 + 3], (100.f + 20 + 2 - 2) * 0.5f);
  EXPECT_THROW(ref::transform_image(img.data(), ref::PixelLayout::kHwc, c, h, 1, p, out.data()),
               std::invalid_argument);
}

TEST(ConvValues, Im2colGemmMatchesDirectLoop) {
  const Nchw xs{2, 3, 9, 7};
  ConvGeom g{4, 3, 5, 2, 1, 1, 2, true};
  const Nchw ys = ref::conv_out_shape(xs, g);
  auto x = testing::random_floats(xs.count(), 1);
  auto w = testing::random_floats(4 * 3 * 3 * 5, 2);
  auto b = testing::random_floats(4, 3);
  std::vector<float> y(ys.count()), col(ref::conv_col_elems(xs, g)), direct(ys.count());
  ref::conv_fwd(xs, x.data(), g, w.data(), b.data(), ys, y.data(), col.data());
  for (int n = 0; n < xs.n; ++n)
    for (int k = 0; k < 4; ++k)
      for (int oy = 0; oy < ys.h; ++oy)
        for (int ox = 0; ox < ys.w; ++ox) {
          double s = b[k];
          for (int c = 0; c < 3; ++c)
            for (int r = 0; r < 3; ++r)
              for (int q = 0; q < 5; ++q) {
                const int iy = oy * 2 - 1 + r, ix = ox * 1 - 2 + q;
                if (iy >= 0 && iy < xs.h && ix >= 0 && ix < xs.w)
                  s += double(w[((k * 3 + c) * 3 + r) * 5 + q]) * x[((n * 3 + c) * xs.h + iy) * xs.w + ix];
              }
          direct[((n * 4 + k) * ys.h + oy) * ys.w + ox] = float(s);
        }
  EXPECT_LT(testing::rel_error(y, direct), 1e-6);
}

// Channels-last im2col rows times KRSC filters (padded rows) is the convolution: conv1's shape
// class (C = 3, 7x7, stride 2, pad 3) and a padded 3x3, against the NCHW reference conv_fwd.
TEST(Im2colValues, RowsTimesKrscFiltersIsTheConvolution) {
  struct Case {
    int n, c, h, w, k, r, stride, pad;
  };
  for (const Case cs :
       {Case{2, 3, 23, 19, 5, 7, 2, 3}, Case{1, 5, 9, 11, 4, 3, 1, 1}, Case{2, 8, 9, 7, 3, 3, 2, 1}}) {
    ConvGeom g;
    g.num_output = cs.k, g.kernel_h = g.kernel_w = cs.r, g.stride_h = g.stride_w = cs.stride;
    g.pad_h = g.pad_w = cs.pad, g.bias = false;
    const Nchw xs{cs.n, cs.c, cs.h, cs.w};
    const Nchw ys = ref::conv_out_shape(xs, g);
    const auto x = testing::random_floats(std::size_t(xs.count()), 71);
    const auto w = testing::random_floats(std::size_t(cs.k) * cs.c * cs.r * cs.r, 72);
    std::vector<float> y(ys.count()), col(std::max<std::int64_t>(ref::conv_col_elems(xs, g), 1));
    ref::conv_fwd(xs, x.data(), g, w.data(), static_cast<const float*>(nullptr), ys, y.data(), col.data());

    const int kc = cs.r * cs.r * cs.c, ld = (kc + 7) / 8 * 8, rows = ys.n * ys.h * ys.w;
    const auto xh = nchw_to_nhwc(x, cs.n, cs.c, cs.h, cs.w);
    std::vector<float> cols(std::size_t(rows) * ld, -1.f), wk(w.size()), wp(std::size_t(cs.k) * ld, -1.f);
    ref::im2col_nhwc(xs, xh.data(), g, ld, cols.data());
    permute_abr_to_arb(w.data(), cs.k, cs.c, cs.r * cs.r, wk.data());  // KCRS -> KRSC
    ref::pad_rows(cs.k, kc, ld, wk.data(), wp.data());
    for (int p = 0; p < rows; ++p)
      for (int j = kc; j < ld; ++j) ASSERT_EQ(cols[std::size_t(p) * ld + j], 0.f);
    std::vector<float> yh(std::size_t(rows) * cs.k);  // NHWC
    for (int p = 0; p < rows; ++p)
      for (int k = 0; k < cs.k; ++k) {
        double acc = 0;
        for (int j = 0; j < ld; ++j)
          acc += double(cols[std::size_t(p) * ld + j]) * wp[std::size_t(k) * ld + j];
        yh[std::size_t(p) * cs.k + k] = float(acc);
      }
    EXPECT_LT(testing::rel_error(nhwc_to_nchw(yh, ys.n, ys.c, ys.h, ys.w), y), 1e-5);

    // col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)>
    if (ld == kc) {
      const auto c = testing::random_floats(cols.size(), 73);
      std::vector<float> back(xh.size(), 5.f);
      ref::col2im_nhwc(xs, c.data(), g, ld, back.data(), false);
      double lhs = 0, rhs = 0;
      for (std::size_t i = 0; i < cols.size(); ++i) lhs += double(cols[i]) * c[i];
      for (std::size_t i = 0; i < xh.size(); ++i) rhs += double(xh[i]) * back[i];
      EXPECT_NEAR(lhs, rhs, 1e-3 * std::fabs(lhs) + 1e-3);
    }

    // unpad_add_rows adds the first kc columns back onto a gradient (+=)
    std::vector<float> acc(wk.size(), 1.f);
    ref::unpad_add_rows(cs.k, ld, kc, wp.data(), acc.data());
    for (std::size_t i = 0; i < acc.size(); ++i) ASSERT_FLOAT_EQ(acc[i], 1.f + wk[i]);
  }
}

}  // namespace
}  // namespace incept

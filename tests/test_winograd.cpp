// The F(2x2, 3x3) Winograd convolution's CPU reference (kernels/winograd_ref.h), put together
// with plain float GEMMs, against the direct convolution in double: forward (bias, ReLU, into a
// concat slice, accumulate), data gradient and filter gradient (in parts), on odd and even
// sizes. Its error must stay within a small factor of the direct float convolution's: the
// claim that makes it an fp32 algorithm.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/layout.h"
#include "kernels/winograd_ref.h"
#include "testing/conv3x3_direct.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using testing::Conv3x3Shape;
using testing::random_floats;
using testing::rel_l2;

constexpr int kE = 16;

// y (view ys) = Winograd forward through the reference pieces
void wino_fwd(const Conv3x3Shape& s, const std::vector<float>& x, const std::vector<float>& w,
              const float* bias, bool relu, const Nchw& ys, float* y, bool accumulate) {
  const Nchw xs{s.n, s.c, s.h, s.w};
  const std::int64_t rows = winograd_tiles(s.n, s.h, s.w);
  std::vector<float> u(kE * s.k * s.c), v(kE * rows * s.c), m(kE * rows * s.k);
  ref::winograd_filters(s.k, s.c, w.data(), false, u.data());
  ref::winograd_inputs(xs, x.data(), rows, v.data());
  for (int e = 0; e < kE; ++e)
    for (std::int64_t t = 0; t < rows; ++t)
      for (int k = 0; k < s.k; ++k) {
        float acc = 0.f;
        for (int c = 0; c < s.c; ++c)
          acc += v[(e * rows + t) * s.c + c] * u[(std::int64_t(e) * s.k + k) * s.c + c];
        m[(e * rows + t) * s.k + k] = acc;
      }
  ref::winograd_outputs(m.data(), rows, bias, relu, ys, y, accumulate);
}

std::vector<float> wino_bwd_data(const Conv3x3Shape& s, const std::vector<float>& dy,
                                 const std::vector<float>& w) {
  const Nchw ys{s.n, s.k, s.h, s.w}, xs{s.n, s.c, s.h, s.w};
  const std::int64_t rows = winograd_tiles(s.n, s.h, s.w) + 3;  // padded rows must be harmless
  std::vector<float> u(kE * s.k * s.c), v(kE * rows * s.k), m(kE * rows * s.c), dx(s.x_count());
  ref::winograd_filters(s.k, s.c, w.data(), true, u.data());
  ref::winograd_inputs(ys, dy.data(), rows, v.data());
  for (int e = 0; e < kE; ++e)
    for (std::int64_t t = 0; t < rows; ++t)
      for (int c = 0; c < s.c; ++c) {
        float acc = 0.f;
        for (int k = 0; k < s.k; ++k)
          acc += v[(e * rows + t) * s.k + k] * u[(std::int64_t(e) * s.c + c) * s.k + k];
        m[(e * rows + t) * s.c + c] = acc;
      }
  ref::winograd_outputs(m.data(), rows, nullptr, false, xs, dx.data(), false);
  return dx;
}

// dw += the filter gradient, the tiles summed in `parts` slices
void wino_bwd_filter(const Conv3x3Shape& s, const std::vector<float>& x, const std::vector<float>& dy,
                     int parts, std::vector<float>& dw) {
  const Nchw ys{s.n, s.k, s.h, s.w}, xs{s.n, s.c, s.h, s.w};
  const std::int64_t tiles = winograd_tiles(s.n, s.h, s.w), part = (tiles + parts - 1) / parts,
                     rows = part * parts;
  std::vector<float> v(kE * rows * s.c), z(kE * rows * s.k), sp(std::size_t(kE) * parts * s.k * s.c);
  ref::winograd_inputs(xs, x.data(), rows, v.data());
  ref::winograd_output_grads(ys, dy.data(), rows, z.data());
  for (int e = 0; e < kE; ++e)
    for (int p = 0; p < parts; ++p)
      for (int k = 0; k < s.k; ++k)
        for (int c = 0; c < s.c; ++c) {
          float acc = 0.f;
          for (std::int64_t t = p * part; t < (p + 1) * part; ++t)
            acc += z[(e * rows + t) * s.k + k] * v[(e * rows + t) * s.c + c];
          sp[((std::size_t(e) * parts + p) * s.k + k) * s.c + c] = acc;
        }
  ref::winograd_filter_grads(s.k, s.c, parts, sp.data(), dw.data());
}

class WinogradRef : public ::testing::TestWithParam<Conv3x3Shape> {};

TEST_P(WinogradRef, ForwardMatchesDirectIntoASlice) {
  const Conv3x3Shape s = GetParam();
  const auto x = random_floats(s.x_count(), 11), w = random_floats(s.w_count(), 12, -0.1f, 0.1f);
  const auto want = testing::conv3x3_fwd<double>(s, x, w);
  const auto direct32 = testing::conv3x3_fwd<float>(s, x, w);
  // into channels [3, 3 + k) of a concat of k + 5 channels; the others must stay untouched
  const int total = s.k + 5, c0 = 3;
  const Nchw ys{s.n, s.k, s.h, s.w, std::int64_t(total) * s.h * s.w};
  std::vector<float> parent(std::size_t(s.n) * s.h * s.w * total, 7.f);
  wino_fwd(s, x, w, nullptr, false, ys, parent.data() + c0, false);
  std::vector<float> got(s.y_count());
  for (std::size_t p = 0; p < std::size_t(s.n) * s.h * s.w; ++p)
    for (int c = 0; c < total; ++c) {
      const float v = parent[p * total + c];
      if (c >= c0 && c < c0 + s.k)
        got[p * s.k + c - c0] = v;
      else
        ASSERT_EQ(v, 7.f) << "pixel " << p << " channel " << c << " outside the slice was written";
    }
  const double err = rel_l2(got, want), err_direct = rel_l2(direct32, want);
  std::printf("forward: Winograd %.3g, direct fp32 %.3g\n", err, err_direct);
  EXPECT_LT(err, 1e-6);
  EXPECT_LT(err, 4 * err_direct + 1e-8);

  // bias + ReLU, then accumulate on top
  const auto b = random_floats(s.k, 13, -0.2f, 0.2f);
  std::vector<float> y(s.y_count());
  wino_fwd(s, x, w, b.data(), true, Nchw{s.n, s.k, s.h, s.w}, y.data(), false);
  std::vector<float> y2 = y;
  wino_fwd(s, x, w, nullptr, false, Nchw{s.n, s.k, s.h, s.w}, y2.data(), true);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double r = std::max(0.0, want[i] + b[i % s.k]);
    ASSERT_NEAR(y[i], r, 1e-5) << i;
    ASSERT_NEAR(y2[i], r + want[i], 2e-5) << i;
  }
}

TEST_P(WinogradRef, DataGradientMatchesDirect) {
  const Conv3x3Shape s = GetParam();
  const auto dy = random_floats(s.y_count(), 21), w = random_floats(s.w_count(), 22, -0.1f, 0.1f);
  const auto want = testing::conv3x3_bwd_data<double>(s, dy, w);
  const auto got = wino_bwd_data(s, dy, w);
  const double err = rel_l2(got, want), err_direct = rel_l2(testing::conv3x3_bwd_data<float>(s, dy, w), want);
  std::printf("data gradient: Winograd %.3g, direct fp32 %.3g\n", err, err_direct);
  EXPECT_LT(err, 1e-6);
  EXPECT_LT(err, 4 * err_direct + 1e-8);
}

TEST_P(WinogradRef, FilterGradientMatchesDirectAndAccumulates) {
  const Conv3x3Shape s = GetParam();
  const auto x = random_floats(s.x_count(), 31), dy = random_floats(s.y_count(), 32);
  const auto want = testing::conv3x3_bwd_filter<double>(s, x, dy);
  const auto direct32 = testing::conv3x3_bwd_filter<float>(s, x, dy);
  for (int parts : {1, 3}) {
    std::vector<float> dw(s.w_count(), 0.f);
    wino_bwd_filter(s, x, dy, parts, dw);
    const double err = rel_l2(dw, want), err_direct = rel_l2(direct32, want);
    std::printf("filter gradient (%d parts): Winograd %.3g, direct fp32 %.3g\n", parts, err, err_direct);
    EXPECT_LT(err, 1e-6);
    EXPECT_LT(err, 4 * err_direct + 1e-8);
    wino_bwd_filter(s, x, dy, parts, dw);  // += : twice the gradient
    for (std::size_t i = 0; i < dw.size(); ++i)
      ASSERT_NEAR(dw[i], 2 * want[i], 1e-3 + 1e-5 * std::abs(want[i]));
  }
}

// odd and even sizes (a half-empty last tile), few and many channels, GoogLeNet's 7x7 and 14x14
INSTANTIATE_TEST_SUITE_P(Shapes, WinogradRef,
                         ::testing::Values(Conv3x3Shape{1, 4, 4, 1, 1}, Conv3x3Shape{2, 5, 7, 3, 4},
                                           Conv3x3Shape{2, 7, 7, 64, 24}, Conv3x3Shape{1, 14, 14, 96, 32}));

TEST(WinogradRef, TilesAndTheirPatches) {
  EXPECT_EQ(winograd_tiles(2, 7, 7), 2 * 4 * 4);
  EXPECT_EQ(winograd_tiles(128, 56, 56), 128 * 28 * 28);
  // one 4x4 input: v = B^T d B, checked by hand on the corner tile of a 2x2 image of ones
  const Nchw xs{1, 1, 2, 2};
  const std::vector<float> x(4, 1.f);
  std::vector<float> v(16);
  ref::winograd_inputs(xs, x.data(), 1, v.data());
  // d = a a^T with a = (0, 1, 1, 0) (the image in the middle of its zero padding), so
  // v = (B^T a)(B^T a)^T with B^T a = (-1, 2, 0, 1)
  const float want[16] = {1, -2, 0, -1, -2, 4, 0, 2, 0, 0, 0, 0, -1, 2, 0, 1};
  for (int e = 0; e < 16; ++e) EXPECT_EQ(v[e], want[e]) << e;
}

}  // namespace
}  // namespace incept

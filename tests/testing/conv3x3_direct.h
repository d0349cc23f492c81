// The direct 3x3 / stride 1 / pad 1 convolution on channels-last data, in double or float by
// the template: the oracle of the Winograd tests (test_winograd, test_gpu_kernels). Dense NHWC
// x [n][h][w][c] and dy/y [n][h][w][k], KRSC filters w [k][3][3][c]; plain loops, one sum per
// output in a fixed order (channels innermost).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace incept::testing {

struct Conv3x3Shape {
  int n, h, w, c, k;
  std::size_t x_count() const { return std::size_t(n) * h * w * c; }
  std::size_t y_count() const { return std::size_t(n) * h * w * k; }
  std::size_t w_count() const { return std::size_t(k) * 9 * c; }
};

template <typename A>
std::vector<A> conv3x3_fwd(const Conv3x3Shape& s, const std::vector<float>& x, const std::vector<float>& w) {
  std::vector<A> y(s.y_count());
  for (int n = 0; n < s.n; ++n)
    for (int i = 0; i < s.h; ++i)
      for (int j = 0; j < s.w; ++j)
        for (int k = 0; k < s.k; ++k) {
          A acc = 0;
          for (int r = 0; r < 3; ++r)
            for (int q = 0; q < 3; ++q) {
              const int yy = i + r - 1, xx = j + q - 1;
              if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
              const float* xp = &x[((std::size_t(n) * s.h + yy) * s.w + xx) * s.c];
              const float* wp = &w[((std::size_t(k) * 3 + r) * 3 + q) * s.c];
              for (int c = 0; c < s.c; ++c) acc += A(xp[c]) * A(wp[c]);
            }
          y[((std::size_t(n) * s.h + i) * s.w + j) * s.k + k] = acc;
        }
  return y;
}

template <typename A>
std::vector<A> conv3x3_bwd_data(const Conv3x3Shape& s, const std::vector<float>& dy,
                                const std::vector<float>& w) {
  std::vector<A> dx(s.x_count());
  for (int n = 0; n < s.n; ++n)
    for (int i = 0; i < s.h; ++i)
      for (int j = 0; j < s.w; ++j)
        for (int c = 0; c < s.c; ++c) {
          A acc = 0;
          for (int r = 0; r < 3; ++r)
            for (int q = 0; q < 3; ++q) {
              const int yy = i - r + 1, xx = j - q + 1;
              if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
              const float* dp = &dy[((std::size_t(n) * s.h + yy) * s.w + xx) * s.k];
              for (int k = 0; k < s.k; ++k)
                acc += A(dp[k]) * A(w[((std::size_t(k) * 3 + r) * 3 + q) * s.c + c]);
            }
          dx[((std::size_t(n) * s.h + i) * s.w + j) * s.c + c] = acc;
        }
  return dx;
}

template <typename A>
std::vector<A> conv3x3_bwd_filter(const Conv3x3Shape& s, const std::vector<float>& x,
                                  const std::vector<float>& dy) {
  std::vector<A> dw(s.w_count());
  for (int k = 0; k < s.k; ++k)
    for (int r = 0; r < 3; ++r)
      for (int q = 0; q < 3; ++q)
        for (int c = 0; c < s.c; ++c) {
          A acc = 0;
          for (int n = 0; n < s.n; ++n)
            for (int i = 0; i < s.h; ++i)
              for (int j = 0; j < s.w; ++j) {
                const int yy = i + r - 1, xx = j + q - 1;
                if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
                acc += A(dy[((std::size_t(n) * s.h + i) * s.w + j) * s.k + k]) *
                       A(x[((std::size_t(n) * s.h + yy) * s.w + xx) * s.c + c]);
              }
          dw[((std::size_t(k) * 3 + r) * 3 + q) * s.c + c] = acc;
        }
  return dw;
}

// ||a - b|| / ||b|| against a double reference
template <typename A>
double rel_l2(const std::vector<A>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    num += d * d, den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace incept::testing

// Every layer type of INCEPT_LAYER_KINDS, on its own test shapes, in double precision:
// finite-difference check of the CPU backward (inputs and parameters), the gradient
// contract (input gradients overwrite or accumulate, parameter gradients accumulate), and
// strided views (n_stride > C*H*W, as concat slices are) leaving the gaps untouched.
// Inputs avoid the kinks of ReLU (|x| >= 0.1) and of MAX pooling (distinct values spaced
// far wider than the finite-difference step).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/layers.h"

namespace incept {
namespace {

constexpr double kEps = 1e-6;
constexpr double kGap = 777.0;  // sentinel in the gaps of strided views
constexpr int kPad = 3;         // extra elements per image in strided views

// One layer with its own buffers (double), for a given test case.
struct Harness {
  LayerParams params;
  bool strided;
  std::vector<std::vector<double>> in, in_diff, out, out_diff, w, w_diff;
  std::vector<std::int32_t> labels;
  std::vector<double> saved, work;
  LayerArgs<double> a;
  std::mt19937_64 rng{1234};

  Harness(const LayerTestCase& tc, bool strided_views) : params(tc.params), strided(strided_views) {
    const LayerKind kind = LayerKind(params.index());
    std::vector<Nchw> shapes = tc.inputs;
    std::vector<Nchw> outs = infer_shapes(params, shapes);
    const bool has_label = kind == LayerKind::kSoftmaxWithLoss || kind == LayerKind::kAccuracy;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      if (has_label && i == 1) {
        a.in_shape.push_back(shapes[i]);
        in.emplace_back();
        in_diff.emplace_back();
        continue;
      }
      if (strided) shapes[i].n_stride = shapes[i].image() + kPad;
      a.in_shape.push_back(shapes[i]);
      in.emplace_back(shapes[i].n * shapes[i].nstride(), kGap);
      in_diff.emplace_back(shapes[i].n * shapes[i].nstride(), kGap);
    }
    for (Nchw s : outs) {
      if (strided) s.n_stride = s.image() + kPad;
      a.out_shape.push_back(s);
      out.emplace_back(s.n * s.nstride(), kGap);
      out_diff.emplace_back(s.n * s.nstride(), kGap);
    }
    for (const auto& ps : param_shapes(params, tc.inputs)) {
      const std::int64_t n = std::accumulate(ps.begin(), ps.end(), std::int64_t(1), std::multiplies<>());
      w.emplace_back(n);
      w_diff.emplace_back(n, 0.0);
    }
    saved.assign(std::max<std::int64_t>(saved_elems(params, tc.inputs), 1), 0.0);
    work.assign(std::max<std::int64_t>(workspace_elems(params, tc.inputs), 1), 0.0);
    fill_inputs(kind, has_label);
    for (auto& v : w)
      for (double& x : v) x = std::uniform_real_distribution<double>(-0.5, 0.5)(rng);
    for (std::size_t t = 0; t < out.size(); ++t)
      for_each(a.out_shape[t],
               [&](std::int64_t i) { out_diff[t][i] = std::uniform_real_distribution<double>(-1, 1)(rng); });
    for (std::size_t i = 0; i < in.size(); ++i) {
      a.in.push_back(in[i].empty() ? nullptr : in[i].data());
      a.in_diff.push_back(in_diff[i].empty() || !propagates_to(params, int(i)) ? nullptr : in_diff[i].data());
      a.accumulate.push_back(0);
    }
    for (std::size_t t = 0; t < out.size(); ++t) {
      a.out.push_back(out[t].data());
      a.out_diff.push_back(out_diff[t].data());
    }
    for (std::size_t p = 0; p < w.size(); ++p) {
      a.w.push_back(w[p].data());
      a.w_diff.push_back(w_diff[p].data());
    }
    a.labels = labels.data();
    a.saved = saved.data();
    a.workspace = work.data();
    a.training = true;
    a.dropout_key = {42, 7, 3};
  }

  // Calls f(i) for the index of every element of a view (skipping the gaps).
  template <typename F>
  static void for_each(const Nchw& s, F&& f) {
    for (int n = 0; n < s.n; ++n)
      for (std::int64_t i = 0; i < s.image(); ++i) f(n * s.nstride() + i);
  }

  void fill_inputs(LayerKind kind, bool has_label) {
    std::uniform_real_distribution<double> u(-1, 1);
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (in[i].empty()) continue;
      const Nchw& s = a.in_shape[i];
      if (kind == LayerKind::kPooling) {
        // Distinct values 0.01 apart in random order: no argmax flips under +-kEps.
        std::vector<double> v(s.count());
        std::iota(v.begin(), v.end(), 0.0);
        std::shuffle(v.begin(), v.end(), rng);
        std::int64_t k = 0;
        for_each(s, [&](std::int64_t j) { in[i][j] = v[k++] * 0.01 - 0.3; });
        continue;
      }
      for_each(s, [&](std::int64_t j) {
        double x = u(rng);
        if (kind == LayerKind::kReLU && std::abs(x) < 0.1) x = x < 0 ? x - 0.1 : x + 0.1;
        in[i][j] = x;
      });
    }
    if (has_label) {
      const Nchw& s = a.in_shape[0];
      labels.resize(std::int64_t(s.n) * s.h * s.w);
      for (auto& l : labels) l = std::int32_t(rng() % s.c);
    }
  }

  // The scalar whose gradient backward computes: sum(out_diff * out) or weight * loss.
  double objective() {
    forward_ref(params, a);
    if (!reads_top_diff(params)) return loss_weight(params) * out[0][0];
    double j = 0;
    for (std::size_t t = 0; t < out.size(); ++t)
      for_each(a.out_shape[t], [&](std::int64_t i) { j += out_diff[t][i] * out[t][i]; });
    return j;
  }

  double numeric(double& x) {
    const double keep = x;
    x = keep + kEps;
    const double jp = objective();
    x = keep - kEps;
    const double jm = objective();
    x = keep;
    return (jp - jm) / (2 * kEps);
  }
};

void expect_close(double analytic, double numeric, const std::string& what) {
  const double tol = 1e-6 + 1e-5 * std::max(std::abs(analytic), std::abs(numeric));
  EXPECT_NEAR(analytic, numeric, tol) << what;
}

class LayerGradient : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(LayerGradient, BackwardMatchesFiniteDifferences) {
  const LayerKind kind = LayerKind(std::get<0>(GetParam()));
  const bool strided = std::get<1>(GetParam());
  int case_index = 0;
  for (const LayerTestCase& tc : test_cases(kind)) {
    SCOPED_TRACE(fmt::format("{} case {} strided {}", kind_name(kind), case_index++, strided));
    Harness h(tc, strided);
    h.objective();
    const auto out_before = h.out;
    backward_ref(h.params, h.a);
    const auto grad_in = h.in_diff;
    const auto grad_w = h.w_diff;
    // Inputs.
    for (std::size_t i = 0; i < h.in.size(); ++i) {
      if (!h.a.in_diff[i]) continue;
      Harness::for_each(h.a.in_shape[i], [&](std::int64_t j) {
        expect_close(grad_in[i][j], h.numeric(h.in[i][j]), fmt::format("d bottom {} [{}]", i, j));
      });
      // Gaps of a strided view are never written.
      for (int n = 0; n < h.a.in_shape[i].n; ++n)
        for (int g = 0; g < kPad && strided; ++g)
          EXPECT_EQ(grad_in[i][n * h.a.in_shape[i].nstride() + h.a.in_shape[i].image() + g], kGap);
    }
    for (std::size_t t = 0; t < h.out.size() && strided; ++t)
      for (int n = 0; n < h.a.out_shape[t].n; ++n)
        for (int g = 0; g < kPad; ++g)
          EXPECT_EQ(out_before[t][n * h.a.out_shape[t].nstride() + h.a.out_shape[t].image() + g], kGap);
    // Parameters.
    for (std::size_t p = 0; p < h.w.size(); ++p)
      for (std::size_t j = 0; j < h.w[p].size(); ++j)
        expect_close(grad_w[p][j], h.numeric(h.w[p][j]), fmt::format("d param {} [{}]", p, j));
    // Contract: a second backward ADDS parameter gradients; with accumulate the input
    // gradients are added to what is there, without it they overwrite.
    h.objective();
    for (std::size_t i = 0; i < h.in.size(); ++i) h.a.accumulate[i] = 1;
    backward_ref(h.params, h.a);
    for (std::size_t p = 0; p < h.w.size(); ++p)
      for (std::size_t j = 0; j < h.w[p].size(); ++j)
        EXPECT_NEAR(h.w_diff[p][j], 2 * grad_w[p][j], 1e-12 + 1e-12 * std::abs(grad_w[p][j]));
    for (std::size_t i = 0; i < h.in.size(); ++i) {
      if (!h.a.in_diff[i]) continue;
      Harness::for_each(h.a.in_shape[i], [&](std::int64_t j) {
        EXPECT_NEAR(h.in_diff[i][j], 2 * grad_in[i][j], 1e-12 + 1e-12 * std::abs(grad_in[i][j]));
      });
      h.a.accumulate[i] = 0;
    }
    backward_ref(h.params, h.a);
    for (std::size_t i = 0; i < h.in.size(); ++i) {
      if (!h.a.in_diff[i]) continue;
      Harness::for_each(h.a.in_shape[i], [&](std::int64_t j) { EXPECT_EQ(h.in_diff[i][j], grad_in[i][j]); });
    }
  }
}

// Kinds without a backward (Accuracy) are checked by value in test_layers_values; leaving them
// out here keeps every instantiated case a real check instead of a skip.
std::vector<int> kinds_with_backward() {
  std::vector<int> kinds;
  for (int k = 0; k < kNumLayerKinds; ++k)
    if (has_backward(LayerParams(test_cases(LayerKind(k))[0].params))) kinds.push_back(k);
  return kinds;
}

INSTANTIATE_TEST_SUITE_P(AllKinds, LayerGradient,
                         ::testing::Combine(::testing::ValuesIn(kinds_with_backward()), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(kind_name(LayerKind(std::get<0>(info.param)))) +
                                  (std::get<1>(info.param) ? "_strided" : "_dense");
                         });

TEST(LayerList, EveryKindHasTestCasesAndAName) {
  for (int k = 0; k < kNumLayerKinds; ++k) {
    EXPECT_FALSE(test_cases(LayerKind(k)).empty()) << k;
    EXPECT_STRNE(kind_name(LayerKind(k)), "Unknown");
    for (const LayerTestCase& tc : test_cases(LayerKind(k))) EXPECT_EQ(int(tc.params.index()), k);
  }
  EXPECT_STREQ(kind_name(LayerKind::kSoftmaxWithLoss), "SoftmaxWithLoss");
}

}  // namespace
}  // namespace incept

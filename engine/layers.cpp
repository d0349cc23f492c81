// LayerTraits for every type of INCEPT_LAYER_KINDS and the generic entry points of
// engine/layers.h. The CPU forward/backward forward to the references in kernels/*_ref.h.
#include "engine/layers.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "engine/check.h"
#include "kernels/conv_ref.h"
#include "kernels/fc_ref.h"
#include "kernels/lrn_ref.h"
#include "kernels/pool_ref.h"
#include "kernels/relu_ref.h"
#include "kernels/softmax_ref.h"

namespace incept {
namespace {

using Shapes = std::span<const Nchw>;
using ParamShapes = std::vector<std::vector<int>>;

void expect_bottoms(const char* type, Shapes in, std::size_t n) {
  if (in.size() != n) throw Error(fmt::format("{} layer takes {} bottom(s), got {}", type, n, in.size()));
}

Nchw dense(Nchw s) {
  s.n_stride = 0;
  return s;
}

// Copies a view into another of the same logical shape (both may be strided).
template <typename T>
void copy_view(const Nchw& s, const T* from, const Nchw& ts, T* to) {
  if (from == to) return;
  for (int n = 0; n < s.n; ++n)
    std::memcpy(to + n * ts.nstride(), from + n * s.nstride(), sizeof(T) * s.image());
}

// Defaults shared by most types; specializations override what differs.
struct TraitsBase {
  static ParamShapes params(Shapes) { return {}; }
  static std::int64_t saved(Shapes) { return 0; }
  static std::int64_t workspace(Shapes) { return 0; }
  static constexpr bool kInPlace = false;
  static constexpr bool kReadsTopDiff = true;
  static constexpr bool kHasBackward = true;
  static bool propagates(int bottom) { return bottom == 0; }
  static float loss_weight() { return 0.f; }
};

}  // namespace

// ---- Convolution ----------------------------------------------------------------------
template <>
struct LayerTraits<ConvParams> : TraitsBase {
  const ConvParams& p;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("Convolution", in, 1);
    if (p.geom.num_output <= 0) throw Error("Convolution needs num_output > 0");
    return {ref::conv_out_shape(in[0], p.geom)};
  }
  ParamShapes params(Shapes in) const {
    const ConvGeom& g = p.geom;
    ParamShapes s{{g.num_output, in[0].c, g.kernel_h, g.kernel_w}};
    if (g.bias) s.push_back({g.num_output});
    return s;
  }
  std::int64_t workspace(Shapes in) const { return ref::conv_col_elems(in[0], p.geom); }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    ref::conv_fwd(a.in_shape[0], a.in[0], p.geom, a.w[0], p.geom.bias ? a.w[1] : nullptr, a.out_shape[0],
                  a.out[0], a.workspace);
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    ref::conv_bwd_filter(a.in_shape[0], a.in[0], a.out_shape[0], a.out_diff[0], p.geom, a.w_diff[0],
                         p.geom.bias ? a.w_diff[1] : nullptr, a.workspace);
    if (a.in_diff[0])
      ref::conv_bwd_data(a.out_shape[0], a.out_diff[0], p.geom, a.w[0], a.in_shape[0], a.in_diff[0],
                         a.workspace, a.accumulate[0]);
  }
  static std::vector<LayerTestCase> tests() {
    auto conv = [](int k, int r, int s, int st, int pad, bool bias) {
      ConvGeom g{k, r, s, st, st, pad, pad, bias};
      return ConvParams{g};
    };
    return {{conv(4, 3, 3, 1, 1, true), {{2, 3, 5, 5}}},
            {conv(3, 3, 3, 2, 1, true), {{2, 2, 7, 6}}},
            {conv(5, 1, 1, 1, 0, true), {{2, 3, 3, 4}}},
            {conv(2, 5, 5, 3, 2, false), {{1, 2, 9, 8}}},
            {conv(3, 7, 7, 2, 3, true), {{1, 3, 11, 11}}}};
  }
};

// ---- ReLU -------------------------------------------------------------------------------
template <>
struct LayerTraits<ReluParams> : TraitsBase {
  const ReluParams& p;
  static constexpr bool kInPlace = true;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("ReLU", in, 1);
    return {dense(in[0])};
  }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    // In place (out == in) the views coincide; otherwise copy-transform between views.
    for (int n = 0; n < a.in_shape[0].n; ++n) {
      const Nchw one{1, a.in_shape[0].c, a.in_shape[0].h, a.in_shape[0].w};
      ref::relu_fwd(one, a.in[0] + n * a.in_shape[0].nstride(), a.out[0] + n * a.out_shape[0].nstride());
    }
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    if (!a.in_diff[0]) return;
    for (int n = 0; n < a.in_shape[0].n; ++n) {
      const Nchw one{1, a.in_shape[0].c, a.in_shape[0].h, a.in_shape[0].w};
      ref::relu_bwd(one, a.out[0] + n * a.out_shape[0].nstride(),
                    a.out_diff[0] + n * a.out_shape[0].nstride(), a.in_diff[0] + n * a.in_shape[0].nstride(),
                    a.accumulate[0]);
    }
  }
  static std::vector<LayerTestCase> tests() {
    return {{ReluParams{}, {{2, 3, 4, 5}}}, {ReluParams{}, {{3, 1, 1, 7}}}};
  }
};

// ---- Pooling -----------------------------------------------------------------------------
template <>
struct LayerTraits<PoolParams> : TraitsBase {
  const PoolParams& p;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("Pooling", in, 1);
    return {pool_out_shape(in[0], p.geom)};
  }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    ref::pool_fwd(a.in_shape[0], a.in[0], p.geom, a.out_shape[0], a.out[0]);
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    if (!a.in_diff[0]) return;
    ref::pool_bwd(a.in_shape[0], a.in[0], p.geom, a.out_shape[0], a.out_diff[0], nullptr, a.in_diff[0],
                  a.accumulate[0]);
  }
  static std::vector<LayerTestCase> tests() {
    auto pool = [](PoolMethod m, int k, int s, int pad) {
      PoolGeom g{m, k, k, s, s, pad, pad, false};
      return PoolParams{g};
    };
    PoolParams global{PoolGeom{PoolMethod::kAve, 1, 1, 1, 1, 0, 0, true}};
    return {{pool(PoolMethod::kMax, 3, 2, 0), {{2, 2, 6, 6}}},  // CEIL: clipped edge window
            {pool(PoolMethod::kMax, 3, 1, 1), {{1, 3, 5, 4}}},  // inception pool branch
            {pool(PoolMethod::kMax, 3, 2, 1), {{1, 2, 7, 8}}},
            {pool(PoolMethod::kAve, 5, 3, 0), {{1, 2, 14, 14}}},  // aux head
            {pool(PoolMethod::kAve, 3, 2, 1), {{2, 2, 6, 7}}},    // divisor: pad counts, overhang not
            {pool(PoolMethod::kAve, 2, 2, 0), {{1, 2, 5, 5}}},
            {global, {{2, 3, 5, 4}}}};
  }
};

// ---- LRN ----------------------------------------------------------------------------------
template <>
struct LayerTraits<LrnParams> : TraitsBase {
  const LrnParams& p;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("LRN", in, 1);
    if (p.geom.local_size % 2 == 0) throw Error("LRN local_size must be odd");
    return {dense(in[0])};
  }
  std::int64_t saved(Shapes in) const { return in[0].count(); }  // scale, dense NCHW
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    ref::lrn_fwd(a.in_shape[0], a.in[0], p.geom, a.out_shape[0], a.out[0], a.saved);
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    if (!a.in_diff[0]) return;
    ref::lrn_bwd(a.in_shape[0], a.in[0], a.out_shape[0], a.out[0], a.out_diff[0], a.saved, p.geom,
                 a.in_diff[0], a.accumulate[0]);
  }
  static std::vector<LayerTestCase> tests() {
    // A large alpha so the cross-channel term matters at test magnitudes.
    return {{LrnParams{LrnGeom{5, 2.0f, 0.75f, 1.f}}, {{2, 7, 3, 3}}},
            {LrnParams{LrnGeom{3, 1.0f, 0.75f, 2.f}}, {{1, 4, 2, 5}}},
            {LrnParams{LrnGeom{5, 1e-4f, 0.75f, 1.f}}, {{1, 3, 2, 2}}}};
  }
};

// ---- Concat ----------------------------------------------------------------------------------
// The net plans bottoms as channel slices of the top, so forward/backward find out == slice
// and copy nothing; standalone (tests) they copy between the views.
template <>
struct LayerTraits<ConcatParams> : TraitsBase {
  const ConcatParams& p;
  std::vector<Nchw> infer(Shapes in) const {
    if (in.empty()) throw Error("Concat needs at least one bottom");
    Nchw out = dense(in[0]);
    out.c = 0;
    for (const Nchw& s : in) {
      if (s.n != out.n || s.h != out.h || s.w != out.w)
        throw Error(fmt::format("Concat bottoms differ in N/H/W: {}x{}x{} vs {}x{}x{}", s.n, s.h, s.w, out.n,
                                out.h, out.w));
      out.c += s.c;
    }
    return {out};
  }
  static bool propagates(int) { return true; }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    const Nchw& o = a.out_shape[0];
    std::int64_t c0 = 0;
    for (std::size_t i = 0; i < a.in.size(); ++i) {
      const Nchw slice{o.n, a.in_shape[i].c, o.h, o.w, o.nstride()};
      copy_view(a.in_shape[i], a.in[i], slice, a.out[0] + c0 * o.h * o.w);
      c0 += a.in_shape[i].c;
    }
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    const Nchw& o = a.out_shape[0];
    std::int64_t c0 = 0;
    for (std::size_t i = 0; i < a.in.size(); ++i) {
      const Nchw slice{o.n, a.in_shape[i].c, o.h, o.w, o.nstride()};
      const T* src = a.out_diff[0] + c0 * o.h * o.w;
      c0 += a.in_shape[i].c;
      if (!a.in_diff[i] || a.in_diff[i] == src) continue;
      for (int n = 0; n < o.n; ++n) {
        T* d = a.in_diff[i] + n * a.in_shape[i].nstride();
        const T* s = src + n * slice.nstride();
        for (std::int64_t j = 0; j < slice.image(); ++j) d[j] = a.accumulate[i] ? d[j] + s[j] : s[j];
      }
    }
  }
  static std::vector<LayerTestCase> tests() {
    return {{ConcatParams{}, {{2, 2, 3, 4}, {2, 3, 3, 4}, {2, 1, 3, 4}}},
            {ConcatParams{}, {{1, 1, 1, 1}, {1, 4, 1, 1}}}};
  }
};

// ---- InnerProduct -----------------------------------------------------------------------------
template <>
struct LayerTraits<FcParams> : TraitsBase {
  const FcParams& p;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("InnerProduct", in, 1);
    if (p.geom.num_output <= 0)
      throw Error("InnerProduct num_output unset: the net must be planned with the class count");
    return {Nchw{in[0].n, p.geom.num_output, 1, 1}};
  }
  ParamShapes params(Shapes in) const {
    ParamShapes s{{p.geom.num_output, int(in[0].image())}};
    if (p.geom.bias) s.push_back({p.geom.num_output});
    return s;
  }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    ref::fc_fwd(a.in_shape[0], a.in[0], p.geom, a.w[0], p.geom.bias ? a.w[1] : nullptr, a.out_shape[0],
                a.out[0]);
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    ref::fc_bwd_filter(a.in_shape[0], a.in[0], a.out_shape[0], a.out_diff[0], p.geom, a.w_diff[0],
                       p.geom.bias ? a.w_diff[1] : nullptr);
    if (a.in_diff[0])
      ref::fc_bwd_data(a.out_shape[0], a.out_diff[0], p.geom, a.w[0], a.in_shape[0], a.in_diff[0],
                       a.accumulate[0]);
  }
  static std::vector<LayerTestCase> tests() {
    return {{FcParams{FcGeom{5, true}}, {{2, 3, 2, 2}}}, {FcParams{FcGeom{4, false}}, {{3, 7, 1, 1}}}};
  }
};

// ---- Dropout ------------------------------------------------------------------------------------
template <>
struct LayerTraits<DropoutParams> : TraitsBase {
  const DropoutParams& p;
  static constexpr bool kInPlace = true;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("Dropout", in, 1);
    if (!(p.ratio >= 0.f && p.ratio < 1.f)) throw Error("Dropout ratio must be in [0, 1)");
    return {dense(in[0])};
  }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    if (!a.training) return copy_view(a.in_shape[0], a.in[0], a.out_shape[0], a.out[0]);
    for (int n = 0; n < a.in_shape[0].n; ++n) {
      // Per image so that in and out may have different strides; the key's element index
      // stays the dense logical one ((first_sample + n) * C*H*W + i), as in kernels/dropout_ref.h.
      const Nchw one{1, a.in_shape[0].c, a.in_shape[0].h, a.in_shape[0].w};
      fwd_image(one, a.in[0] + n * a.in_shape[0].nstride(), a.dropout_key, n,
                a.out[0] + n * a.out_shape[0].nstride());
    }
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    if (!a.in_diff[0]) return;
    const std::uint64_t stream =
        ref::dropout_stream(a.dropout_key.seed, a.dropout_key.step, a.dropout_key.layer_id);
    const T scale = T(1) / (T(1) - T(p.ratio));
    const Nchw& s = a.in_shape[0];
    for (int n = 0; n < s.n; ++n) {
      const T* dy = a.out_diff[0] + n * a.out_shape[0].nstride();
      T* dx = a.in_diff[0] + n * s.nstride();
      for (std::int64_t i = 0; i < s.image(); ++i) {
        const T v = ref::dropout_keep(stream, (a.dropout_key.first_sample + n) * s.image() + i, p.ratio)
                        ? dy[i] * scale
                        : T(0);
        dx[i] = a.accumulate[0] ? dx[i] + v : v;
      }
    }
  }
  template <typename T>
  void fwd_image(const Nchw& one, const T* x, const ref::DropoutKey& key, int n, T* y) const {
    const std::uint64_t stream = ref::dropout_stream(key.seed, key.step, key.layer_id);
    const T scale = T(1) / (T(1) - T(p.ratio));
    for (std::int64_t i = 0; i < one.image(); ++i)
      y[i] =
          ref::dropout_keep(stream, (key.first_sample + n) * one.image() + i, p.ratio) ? x[i] * scale : T(0);
  }
  static std::vector<LayerTestCase> tests() {
    return {{DropoutParams{0.3f}, {{2, 3, 4, 4}}}, {DropoutParams{0.7f}, {{4, 16, 1, 1}}}};
  }
};

// ---- SoftmaxWithLoss ------------------------------------------------------------------------------
template <>
struct LayerTraits<SoftmaxLossParams> : TraitsBase {
  const SoftmaxLossParams& p;
  static constexpr bool kReadsTopDiff = false;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("SoftmaxWithLoss", in, 2);
    return {Nchw{1, 1, 1, 1}};
  }
  std::int64_t saved(Shapes in) const { return in[0].count(); }  // prob, dense NCHW
  float loss_weight() const { return p.loss_weight; }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    a.out[0][0] = ref::softmax_loss_fwd(a.in_shape[0], a.in[0], a.labels, a.saved);
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    if (!a.in_diff[0]) return;
    ref::softmax_loss_bwd(a.in_shape[0], a.saved, a.labels, T(p.loss_weight), a.in_diff[0], a.accumulate[0]);
  }
  static std::vector<LayerTestCase> tests() {
    return {{SoftmaxLossParams{0.3f}, {{3, 5, 1, 1}, {3, 1, 1, 1}}},
            {SoftmaxLossParams{1.f}, {{2, 4, 2, 3}, {2, 1, 2, 3}}}};
  }
};

// ---- Accuracy ----------------------------------------------------------------------------------------
template <>
struct LayerTraits<AccuracyParams> : TraitsBase {
  const AccuracyParams& p;
  static constexpr bool kReadsTopDiff = false;
  static constexpr bool kHasBackward = false;
  static bool propagates(int) { return false; }
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("Accuracy", in, 2);
    if (p.top_k < 1) throw Error("Accuracy top_k must be >= 1");
    return {Nchw{1, 1, 1, 1}};
  }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    a.out[0][0] = ref::accuracy(a.in_shape[0], a.in[0], a.labels, p.top_k);
  }
  template <typename T>
  void backward(const LayerArgs<T>&) const {}
  static std::vector<LayerTestCase> tests() {
    return {{AccuracyParams{1}, {{4, 6, 1, 1}, {4, 1, 1, 1}}},
            {AccuracyParams{3}, {{4, 6, 1, 1}, {4, 1, 1, 1}}}};
  }
};

// ---- Softmax -------------------------------------------------------------------------------------------
template <>
struct LayerTraits<SoftmaxParams> : TraitsBase {
  const SoftmaxParams& p;
  std::vector<Nchw> infer(Shapes in) const {
    expect_bottoms("Softmax", in, 1);
    return {dense(in[0])};
  }
  template <typename T>
  void forward(const LayerArgs<T>& a) const {
    ref::softmax_fwd(a.in_shape[0], a.in[0], a.out_shape[0], a.out[0]);
  }
  template <typename T>
  void backward(const LayerArgs<T>& a) const {
    if (!a.in_diff[0]) return;
    ref::softmax_bwd(a.out_shape[0], a.out[0], a.out_diff[0], a.in_shape[0], a.in_diff[0], a.accumulate[0]);
  }
  static std::vector<LayerTestCase> tests() {
    return {{SoftmaxParams{}, {{2, 5, 1, 1}}}, {SoftmaxParams{}, {{2, 4, 2, 2}}}};
  }
};

// ---- generic entry points --------------------------------------------------------------------------------
namespace {

template <typename F>
decltype(auto) visit_traits(const LayerParams& params, F&& f) {
  return std::visit(
      [&](const auto& p) -> decltype(auto) {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, std::monostate>) {
          static const ReluParams kNone{};
          throw Error("layer has no type (unset LayerParams)");
          return f(LayerTraits<ReluParams>{{}, kNone});  // unreachable; fixes the return type
        } else {
          return f(LayerTraits<P>{{}, p});
        }
      },
      params);
}

}  // namespace

const char* kind_name(LayerKind kind) {
  static constexpr const char* kNames[] = {
#define INCEPT_KIND_NAME(name, params) #name,
      INCEPT_LAYER_KINDS(INCEPT_KIND_NAME)
#undef INCEPT_KIND_NAME
  };
  const int i = int(kind);
  return i >= 0 && i < kNumLayerKinds ? kNames[i] : "Unknown";
}

std::vector<Nchw> infer_shapes(const LayerParams& p, std::span<const Nchw> in) {
  return visit_traits(p, [&](const auto& t) { return t.infer(in); });
}
std::vector<std::vector<int>> param_shapes(const LayerParams& p, std::span<const Nchw> in) {
  return visit_traits(p, [&](const auto& t) { return t.params(in); });
}
std::int64_t saved_elems(const LayerParams& p, std::span<const Nchw> in) {
  return visit_traits(p, [&](const auto& t) { return t.saved(in); });
}
std::int64_t workspace_elems(const LayerParams& p, std::span<const Nchw> in) {
  return visit_traits(p, [&](const auto& t) { return t.workspace(in); });
}
bool can_run_in_place(const LayerParams& p) {
  return visit_traits(p, [](const auto& t) { return std::decay_t<decltype(t)>::kInPlace; });
}
bool propagates_to(const LayerParams& p, int bottom) {
  return visit_traits(p, [&](const auto& t) { return t.propagates(bottom); });
}
bool reads_top_diff(const LayerParams& p) {
  return visit_traits(p, [](const auto& t) { return std::decay_t<decltype(t)>::kReadsTopDiff; });
}
bool has_backward(const LayerParams& p) {
  return visit_traits(p, [](const auto& t) { return std::decay_t<decltype(t)>::kHasBackward; });
}
float loss_weight(const LayerParams& p) {
  return visit_traits(p, [](const auto& t) { return t.loss_weight(); });
}

std::vector<LayerTestCase> test_cases(LayerKind kind) {
  switch (kind) {
#define INCEPT_KIND_TESTS(name, params) \
  case LayerKind::k##name:              \
    return LayerTraits<params>::tests();
    INCEPT_LAYER_KINDS(INCEPT_KIND_TESTS)
#undef INCEPT_KIND_TESTS
  }
  return {};
}

template <typename T>
void forward_ref(const LayerParams& p, const LayerArgs<T>& a) {
  visit_traits(p, [&](const auto& t) { t.forward(a); });
}
template <typename T>
void backward_ref(const LayerParams& p, const LayerArgs<T>& a) {
  visit_traits(p, [&](const auto& t) { t.backward(a); });
}

template void forward_ref<float>(const LayerParams&, const LayerArgs<float>&);
template void forward_ref<double>(const LayerParams&, const LayerArgs<double>&);
template void backward_ref<float>(const LayerParams&, const LayerArgs<float>&);
template void backward_ref<double>(const LayerParams&, const LayerArgs<double>&);

}  // namespace incept

// What each layer type of INCEPT_LAYER_KINDS knows about itself: LayerTraits<Params>, one
// specialization per type (engine/layers.cpp) with its Caffe type string, shape inference,
// parameter shapes, saved-state and workspace needs, whether it may run in place, which
// bottoms take a gradient, its CPU forward_ref/backward_ref and a few test shapes.
// The generic entry points below visit LayerParams, so a type missing from here fails to
// compile. A device backend adds its own per-type forward/backward the same way
// (GpuLayerTraits<Params>, visited over the same variant) and reuses everything else.
//
// Gradient contract (all backends):
// - parameter gradients ACCUMULATE (+=) into the gradient arena, which is zeroed once per
//   step with one memset (so iter_size accumulation and multi-GPU reduce work unchanged);
// - input gradients OVERWRITE, unless LayerArgs::accumulate[i] is set: the net sets it for
//   every consumer of a fanned-out blob but the first to run backward (inception branches,
//   auxiliary heads), so there are no Split layers;
// - loss layers ignore their top diff and scale by loss_weight (Caffe seeds it so).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/layer_spec.h"
#include "kernels/dropout_ref.h"

namespace incept {

// Pointers one layer's forward/backward works on, built once per net (nothing is allocated
// during a step). Values and diffs are NCHW views with the shapes in in_shape/out_shape
// (n_stride may exceed C*H*W: concat slices); a diff pointer is null when no gradient flows
// there. The same struct carries device pointers for a device backend.
template <typename T>
struct LayerArgs {
  std::vector<Nchw> in_shape, out_shape;
  std::vector<const T*> in;              // bottoms' values
  std::vector<T*> out;                   // tops' values (== in[i] for in-place layers)
  std::vector<T*> in_diff;               // bottoms' gradients (null: none wanted)
  std::vector<const T*> out_diff;        // tops' gradients (null: none)
  std::vector<char> accumulate;          // per bottom: add into in_diff instead of overwriting
  std::vector<T*> w;                     // parameter blobs (weights, bias), dense
  std::vector<T*> w_diff;                // their gradients (accumulate)
  const std::int32_t* labels = nullptr;  // int32[N*H*W] for loss/accuracy layers
  T* saved = nullptr;                    // per-layer state kept from forward to backward (dense)
  T* workspace = nullptr;                // shared scratch, valid only during the call
  bool training = true;
  ref::DropoutKey dropout_key;  // step and layer id filled by the net
};

template <typename P>
struct LayerTraits;  // specialized for every params struct of INCEPT_LAYER_KINDS

// A small case for the per-type tests: parameters and input shapes.
struct LayerTestCase {
  LayerParams params;
  std::vector<Nchw> inputs;
};

// ---- generic entry points (visit the variant) ----------------------------------------
std::vector<Nchw> infer_shapes(const LayerParams& p, std::span<const Nchw> in);
// Caffe blob shapes of the parameters (weights first, then bias), e.g. {K, C, R, S}, {K}.
std::vector<std::vector<int>> param_shapes(const LayerParams& p, std::span<const Nchw> in);
std::int64_t saved_elems(const LayerParams& p, std::span<const Nchw> in);
std::int64_t workspace_elems(const LayerParams& p, std::span<const Nchw> in);
bool can_run_in_place(const LayerParams& p);
// Whether backward writes a gradient for bottom i (labels and Accuracy never do).
bool propagates_to(const LayerParams& p, int bottom);
// Whether backward reads the top diff (loss layers do not; they use loss_weight).
bool reads_top_diff(const LayerParams& p);
// Whether the layer has a backward at all (Accuracy and Softmax-at-deploy style outputs do not).
bool has_backward(const LayerParams& p);
// Loss weight of a loss layer's top (0 for others): sum(weight * loss) is the objective.
float loss_weight(const LayerParams& p);
std::vector<LayerTestCase> test_cases(LayerKind kind);

template <typename T>
void forward_ref(const LayerParams& p, const LayerArgs<T>& a);
template <typename T>
void backward_ref(const LayerParams& p, const LayerArgs<T>& a);

}  // namespace incept

// The CPU backend of a planned net: host arenas laid out by the NetPlan (activations +
// gradients + saved state in one, parameters / gradients / momentum in three of identical
// layout, one workspace) and forward/backward through every layer's forward_ref/backward_ref.
// It is the oracle the GPU net is compared with and what the CPU tests train.
//
// A device backend plugs in the same way: allocate the arenas from the same plan
// (activation_elems, param_elems x3, workspace_elems), build one LayerArgs<T> per layer with
// device pointers (offsets from BlobPlan/ParamPlan/LayerPlan, exactly as build_args() below),
// and call its own per-type forward/backward in plan order, honouring accumulate[] and
// zero_diffs. Nothing is allocated after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/layers.h"
#include "engine/net_plan.h"

namespace incept {

// Parameters, their gradients and the SGD history, one layout (NetPlan::params). Nets of one
// replica (training and validation) share one store.
template <typename T>
struct CpuParams {
  std::vector<T> params, grads, momentum;
};

template <typename T>
class CpuNet {
 public:
  // `shared`: the parameter store of another net with the same parameter layout (a validation
  // net sharing the training net's weights); null: the net makes its own.
  explicit CpuNet(NetPlan plan, std::shared_ptr<CpuParams<T>> shared = nullptr);
  CpuNet(const CpuNet&) = delete;
  CpuNet& operator=(const CpuNet&) = delete;

  const NetPlan& plan() const { return plan_; }

  // Network input: NCHW dense, batch x C x H x W, T.
  T* data() { return blob_data(plan_.data_blob); }
  // Labels: int32[batch].
  std::int32_t* labels() { return labels_.data(); }

  // Caffe fillers from a seed (engine/fillers.h).
  void init_params(std::uint64_t seed);
  // Seed of the dropout masks (with the step and the layer index, engine/layers.h).
  void set_dropout_seed(std::uint64_t seed) { dropout_seed_ = seed; }
  // This net's first example within a bigger batch it is a shard of: dropout masks are those
  // of the same examples in one net of the whole batch (kernels/dropout_ref.h).
  void set_dropout_first_sample(std::uint64_t first) { dropout_first_sample_ = first; }

  // Forward through every layer; `step` keys the dropout masks (forward and backward of one
  // step must use the same). Returns the objective sum(loss_weight * loss).
  T forward(std::uint64_t step = 0);
  // Backward through every layer (in reverse), parameter gradients ADDED to grads(): call
  // zero_grads() first (once per step: one memset over the gradient arena).
  void backward();
  void zero_grads();
  // One layer of forward() / backward() (plan order), for tests that look at a layer's inputs
  // before it runs. backward_layer zeroes the layer's zero_diffs first, as backward() does.
  void forward_layer(int l, std::uint64_t step);
  void backward_layer(int l);

  // Parameter arena and its twins (identical layout, ParamPlan offsets), dense T.
  std::span<T> params() { return store_->params; }
  std::span<T> grads() { return store_->grads; }
  std::span<T> momentum() { return store_->momentum; }
  T* param(int id) { return store_->params.data() + plan_.params[id].offset; }
  T* grad(int id) { return store_->grads.data() + plan_.params[id].offset; }
  const std::shared_ptr<CpuParams<T>>& param_store() const { return store_; }

  // A blob's values / gradient (NCHW view plan().blobs[id].shape); gradient null if none.
  T* blob_data(int id) { return acts_.data() + plan_.blobs[id].offset; }
  T* blob_diff(int id) {
    const std::int64_t o = plan_.blobs[id].diff_offset;
    return o < 0 ? nullptr : acts_.data() + o;
  }
  // A scalar output (loss, accuracy) by blob name, after forward().
  T output(const std::string& blob) const;
  // Every output blob of one element: (name, value), in layer order.
  std::vector<std::pair<std::string, T>> scalar_outputs() const;

 private:
  void build_args();

  NetPlan plan_;
  std::vector<T> acts_;                  // activation arena (values, gradients, saved state), NCHW views
  std::shared_ptr<CpuParams<T>> store_;  // parameters, gradients, SGD history (ParamPlan layout)
  std::vector<T> work_;                  // shared scratch
  std::vector<std::int32_t> labels_;
  std::vector<LayerArgs<T>> args_;  // one per layer, built once
  std::uint64_t dropout_seed_ = 0;
  std::uint64_t dropout_first_sample_ = 0;
};

extern template class CpuNet<float>;
extern template class CpuNet<double>;

}  // namespace incept

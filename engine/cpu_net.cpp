// CPU backend of a planned net (cpu_net.h).
#include "engine/cpu_net.h"

#include <fmt/format.h>

#include <algorithm>

#include "engine/check.h"
#include "engine/fillers.h"

namespace incept {

template <typename T>
CpuNet<T>::CpuNet(NetPlan plan, std::shared_ptr<CpuParams<T>> shared)
    : plan_(std::move(plan)),
      acts_(plan_.activation_elems),
      store_(std::move(shared)),
      work_(std::max<std::int64_t>(plan_.workspace_elems, 1)),
      labels_(plan_.options.batch) {
  if (!store_) {
    store_ = std::make_shared<CpuParams<T>>();
    store_->params.resize(plan_.param_elems);
    store_->grads.resize(plan_.param_elems);
    store_->momentum.resize(plan_.param_elems);
  } else if (std::int64_t(store_->params.size()) != plan_.param_elems) {
    throw Error(fmt::format("net {}: {} parameters, the shared store holds {}", plan_.name, plan_.param_elems,
                            store_->params.size()));
  }
  build_args();
}

template <typename T>
void CpuNet<T>::build_args() {
  args_.resize(plan_.layers.size());
  for (std::size_t l = 0; l < plan_.layers.size(); ++l) {
    const LayerPlan& lp = plan_.layers[l];
    LayerArgs<T>& a = args_[l];
    for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
      const BlobPlan& b = plan_.blobs[lp.bottoms[i]];
      a.in_shape.push_back(b.shape);
      a.in.push_back(b.is_label ? nullptr : acts_.data() + b.offset);
      a.in_diff.push_back(lp.bottom_diff[i] ? blob_diff(lp.bottoms[i]) : nullptr);
      a.accumulate.push_back(lp.accumulate[i]);
    }
    for (int t : lp.tops) {
      a.out_shape.push_back(plan_.blobs[t].shape);
      a.out.push_back(blob_data(t));
      a.out_diff.push_back(blob_diff(t));
    }
    for (int p : lp.param_ids) {
      a.w.push_back(param(p));
      a.w_diff.push_back(grad(p));
    }
    a.labels = labels_.data();
    a.saved = lp.saved_offset >= 0 ? acts_.data() + lp.saved_offset : nullptr;
    a.workspace = work_.data();
    a.training = plan_.options.training;
    a.dropout_key.layer_id = std::uint32_t(l);
    if (lp.run_backward && reads_top_diff(lp.params))
      for (std::size_t t = 0; t < lp.tops.size(); ++t)
        if (!a.out_diff[t])
          throw Error(
              fmt::format("layer {}: backward needs the gradient of top '{}' but none is "
                          "planned",
                          lp.name, plan_.blobs[lp.tops[t]].name));
  }
}

template <typename T>
void CpuNet<T>::init_params(std::uint64_t seed) {
  fill_params(plan_, seed, store_->params.data());
  std::fill(store_->momentum.begin(), store_->momentum.end(), T(0));
}

template <typename T>
void CpuNet<T>::forward_layer(int l, std::uint64_t step) {
  LayerArgs<T>& a = args_[l];
  a.dropout_key.seed = dropout_seed_;
  a.dropout_key.step = step;
  a.dropout_key.first_sample = dropout_first_sample_;
  forward_ref(plan_.layers[l].params, a);
}

template <typename T>
T CpuNet<T>::forward(std::uint64_t step) {
  T objective = 0;
  for (std::size_t l = 0; l < plan_.layers.size(); ++l) {
    forward_layer(int(l), step);
    if (plan_.layers[l].loss_weight != 0.f) objective += T(plan_.layers[l].loss_weight) * args_[l].out[0][0];
  }
  return objective;
}

template <typename T>
void CpuNet<T>::backward_layer(int l) {
  if (!plan_.options.training) throw Error(fmt::format("net {}: planned without gradients", plan_.name));
  const LayerPlan& lp = plan_.layers[l];
  for (int r : lp.zero_diffs) std::fill_n(blob_diff(r), plan_.blobs[r].shape.count(), T(0));
  if (lp.run_backward) backward_ref(lp.params, args_[l]);
}

template <typename T>
void CpuNet<T>::backward() {
  for (int l = int(plan_.layers.size()) - 1; l >= 0; --l) backward_layer(l);
}

template <typename T>
void CpuNet<T>::zero_grads() {
  std::fill(store_->grads.begin(), store_->grads.end(), T(0));
}

template <typename T>
T CpuNet<T>::output(const std::string& blob) const {
  const int id = plan_.blob(blob);
  return acts_[plan_.blobs[id].offset];
}

template <typename T>
std::vector<std::pair<std::string, T>> CpuNet<T>::scalar_outputs() const {
  std::vector<std::pair<std::string, T>> out;
  for (const BlobPlan& b : plan_.blobs)
    if (b.is_output && b.shape.count() == 1) out.emplace_back(b.name, acts_[b.offset]);
  return out;
}

template class CpuNet<float>;
template class CpuNet<double>;

}  // namespace incept

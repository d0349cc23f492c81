// The CPU reference net (CpuNet<double>) at a batch too big for one thread in a test's time
// (GoogLeNet at batch 128: about a minute per forward+backward on one core): `shards` nets of
// batch / shards images each, run in parallel threads, OpenBLAS held to one thread per caller.
// It computes what one net of the whole batch computes, up to the order of double-precision
// sums: every layer but the losses works image by image, dropout masks are keyed by an image's
// place in the whole batch (CpuNet::set_dropout_first_sample), and a shard's loss is the mean
// over its images, so the batch's loss is the mean of the shards' losses and every gradient
// (of an activation or a parameter) is the shards' divided by the number of shards.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu_net.h"
#include "engine/layer_spec.h"
#include "engine/net_plan.h"

namespace incept::testing {

class ShardedCpuNet {
 public:
  // options.batch is the whole batch; `shards` must divide it (0: the largest power of two that
  // divides it and is at most the machine's hardware threads).
  ShardedCpuNet(const NetSpec& spec, PlanOptions options, int shards = 0);
  ShardedCpuNet(const ShardedCpuNet&) = delete;
  ShardedCpuNet& operator=(const ShardedCpuNet&) = delete;

  int shards() const { return int(nets_.size()); }
  int batch() const { return batch_; }
  const NetPlan& plan() const { return nets_[0]->plan(); }  // one shard's plan (batch / shards)
  CpuNet<double>& shard(int k) { return *nets_[k]; }

  void set_params(std::span<const double> params);  // every shard
  void set_input(std::span<const float> nchw);      // the whole batch, dense NCHW
  void set_labels(std::span<const std::int32_t> labels);
  void set_dropout_seed(std::uint64_t seed);
  // A reference that rounds where the GPU's bf16 mode stores: every layer's outputs rounded to
  // bf16 after its forward (scalar outputs, the losses, stay exact), every input gradient after
  // its backward, and grads() rounded (the GPU keeps parameter gradients in bf16). The inputs
  // and weights are the caller's to round. Needs a power-of-two number of shards: a shard's
  // gradients are then the whole batch's times a power of two, with which rounding commutes.
  void set_round_bf16(bool on);

  // zero_grads, then every layer's forward; each shard in its own thread. before_layer(shard, l),
  // if given, runs in that shard's thread just before layer l's forward (to copy an input that
  // an in-place layer overwrites).
  void forward(std::uint64_t step, const std::function<void(int, int)>& before_layer = {});
  void backward();             // every layer, each shard in its own thread
  void backward_layer(int l);  // one layer, the shards in parallel

  // The whole batch's parameter gradient (the shards' mean), in the plan's parameter layout.
  std::vector<double> grads() const;
  // The whole batch's scalar outputs (losses: the shards' mean), in layer order.
  std::vector<std::pair<std::string, double>> scalar_outputs() const;
  // A blob's values / gradient over the whole batch, dense NCHW (gradients scaled to the whole
  // batch's loss). Call between passes, not from before_layer.
  std::vector<double> blob_data(int blob);
  std::vector<double> blob_diff(int blob);

 private:
  // fn(k) for every shard k, one thread each; rethrows the first exception.
  void parallel(const std::function<void(int)>& fn);
  std::vector<double> gather(int blob, bool diff);
  void round_tops(CpuNet<double>& net, int l) const;
  void round_bottom_diffs(CpuNet<double>& net, int l) const;

  int batch_ = 0;
  bool round_bf16_ = false;
  std::vector<std::unique_ptr<CpuNet<double>>> nets_;
};

}  // namespace incept::testing

// The parameter store of one GPU replica: fp32 master weights, the low-precision copy the
// bf16 kernels read, the gradients (activation dtype) and the fp32 momentum, four buffers of
// one layout (NetPlan::params offsets), plus the fused SGD update over all of them. Data
// parallel in bf16 adds a fifth: the gradients widened to fp32, which the all-reduce sums and
// the update reads, so the sum over the replicas is never rounded to bf16.
//
// One store serves every net of a replica: the training net, the forward-only validation
// net (its own batch and activations, the same weights, no copies), the snapshot writer
// (host copies only when a snapshot is taken) and the gradient all-reduce (contiguous
// buckets of grads()). Nets built on one store must plan the same parameter layout
// (GpuParams::check_layout).
//
// Host values are always fp32 in Caffe's layout (KCRS filters, [M, K] inner products). On a
// channels-last device the store keeps filters KRSC and permutes at this boundary.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/net_plan.h"
#include "engine/owners.h"
#include "kernels/dtype_gpu.h"
#include "kernels/sgd_gpu.h"

namespace incept {

class GpuParams {
 public:
  // Allocates the four buffers for `plan`'s layout on the current device (zeroed).
  GpuParams(const NetPlan& plan, kernels::DType dtype, bool channels_last);
  GpuParams(const GpuParams&) = delete;
  GpuParams& operator=(const GpuParams&) = delete;

  kernels::DType dtype() const { return dtype_; }
  bool channels_last() const { return channels_last_; }
  std::int64_t elems() const { return elems_; }
  const std::vector<ParamPlan>& layout() const { return layout_; }
  // Throws Error when `plan` lays its parameters out differently from this store.
  void check_layout(const NetPlan& plan) const;

  // Device views.
  float* master() const { return master_.as<float>(); }
  void* weights() const;  // what the kernels read: the bf16 copy in bf16, else the master
  void* grads() const { return grads_.data(); }
  float* history() const { return history_.as<float>(); }
  std::size_t grad_bytes() const { return grads_.bytes(); }

  // The fp32 gradient sum (bf16 data parallel): allocates it (zeroed) on first call. From then
  // on update() and get_grads() read it instead of grads(); widen_grads() fills it.
  void enable_fp32_grad_sum();
  float* grad_sum() const { return grad_sum_.as<float>(); }  // null unless enabled
  // grad_sum[lo, hi) = grads[lo, hi) widened to fp32 (exact), enqueued on `stream`.
  void widen_grads(std::int64_t lo, std::int64_t hi, cudaStream_t stream);

  // Host copies (fp32, Caffe layout, elems() values). Setters also refresh the bf16 copy.
  // Each call synchronizes `stream` (snapshots, tests and start-up only).
  void set_params(std::span<const float> host, cudaStream_t stream);
  void get_params(std::span<float> host, cudaStream_t stream) const;
  void get_grads(std::span<float> host, cudaStream_t stream) const;  // what update() reads
  void set_momentum(std::span<const float> host, cudaStream_t stream);
  void get_momentum(std::span<float> host, cudaStream_t stream) const;
  void zero_momentum(cudaStream_t stream);

  // Enqueued on `stream`, never waiting for the host.
  void zero_grads(cudaStream_t stream);
  // Caffe's SGD with momentum and weight decay over every parameter, one launch; the step
  // values (lr, momentum, decay, grad scale) are read from device memory so a captured
  // graph replays with the values copied in before its launch.
  void update(const kernels::SgdStepParams* step, cudaStream_t stream);

  std::size_t device_bytes() const;

 private:
  struct Permute {
    std::int64_t offset;
    int a, b, r;  // host [a][b][r] <-> device [a][r][b]
  };
  void permute(std::span<float> v, bool to_device) const;

  kernels::DType dtype_;
  bool channels_last_;
  std::int64_t elems_;
  std::vector<ParamPlan> layout_;
  std::vector<Permute> permutes_;
  DeviceBuffer master_;      // fp32
  DeviceBuffer weights_lp_;  // bf16 copy (bf16 mode only)
  DeviceBuffer grads_;       // dtype
  DeviceBuffer history_;     // fp32 momentum
  DeviceBuffer grad_sum_;    // fp32 gradients the all-reduce sums (bf16 data parallel only)
  DeviceBuffer segments_;    // SGD segment table, one per parameter blob
  int n_segments_ = 0;
};

}  // namespace incept

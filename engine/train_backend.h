// What the training loop (engine/trainer.h) needs from a device: one replica's training net
// and forward-only validation net on ONE parameter store, fed with the loader's decoded
// batches. The CPU reference (CpuNet<float>) and a GPU (GpuNet + GpuInput) implement it, so
// both run the same trainer code: one loop, two backends.
//
// Nothing here waits for the device except the calls documented as synchronizing (reading
// numbers, host copies of the weights). A batch handed to train_step/val_batch is read
// asynchronously; its `release` callback runs once the backend no longer needs the batch's
// memory (a GPU: its copy to the device finished), from a later call or from drain().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "engine/gpu_net.h"
#include "engine/layer_spec.h"

namespace incept {

// Sums of scalar outputs (losses, accuracies) by Caffe top name, in layer order.
using OutputSums = std::vector<std::pair<std::string, double>>;

struct BackendConfig {
  NetSpec spec;
  int num_classes = 0;
  int batch = 0;                           // training images per step on this replica
  int val_batch = 0;                       // validation images per forward pass (0: no validation net)
  int channels = 3, src_h = 0, src_w = 0;  // the records' shape (HWC uint8)
  int crop = 0;                            // network input size (0: the whole record)
  float scale = 1.f;                       // transform_param.scale
  std::vector<float> mean_chw;             // mean image [channels, src_h, src_w], or empty
  std::vector<float> mean_values;          // per-channel mean (used when mean_chw is empty), or empty
  std::uint64_t dropout_seed = 0;
  // GPU only.
  int device = 0;
  GpuNetOptions gpu;
  bool graph = true;  // the step as one CUDA graph (false: eager, for debugging)
};

class NcclGroup;

// A replica's part of the gradient all-reduce.
struct GradReduceConfig {
  ncclComm_t comm = nullptr;  // null: trains alone
  bool sum_fp32 = true;       // bf16: sum in fp32 (GradReduceOptions::sum_fp32)
  // The group's watchdog bounds every step: a step (and so its all-reduce) not finished
  // step_timeout_s after it was enqueued aborts the communicators on every rank, and the next
  // call into the backend throws the group's error. Null: unwatched.
  NcclGroup* group = nullptr;
  double step_timeout_s = 300;
};

class TrainBackend {
 public:
  using Release = std::function<void()>;
  virtual ~TrainBackend() = default;

  virtual std::string describe() const = 0;       // the device and the numeric mode
  virtual std::string memory_report() const = 0;  // what was allocated, for the start-up log
  virtual const NetPlan& train_plan() const = 0;
  std::int64_t param_elems() const { return train_plan().param_elems; }

  // Host copies, fp32 in Caffe's layout (synchronize).
  virtual void init_params(std::uint64_t seed) = 0;  // Caffe fillers, momentum zeroed
  virtual void get_params(std::span<float> host) = 0;
  virtual void set_params(std::span<const float> host) = 0;
  virtual void get_momentum(std::span<float> host) = 0;
  virtual void set_momentum(std::span<const float> host) = 0;

  // One SGD step on `batch` (zero gradients, forward, backward, update), enqueued.
  virtual void train_step(const data::Batch& batch, const StepValues& values, Release release) = 0;
  // Sums of the training outputs over the steps since the last call (synchronizes).
  virtual OutputSums take_train_sums() = 0;

  // A validation pass: val_begin, val_batch for every batch, then val_sums: each output
  // summed over the pass weighted by its batch's real examples (synchronizes).
  virtual void val_begin() = 0;
  virtual void val_batch(const data::Batch& batch, Release release) = 0;
  virtual OutputSums val_sums() = 0;

  // Waits for all enqueued work and runs every pending release.
  virtual void drain() = 0;
  // Makes the calling thread use this backend's device (a replica's thread, first thing).
  virtual void bind_thread() {}

  // Data parallelism (GPU): sum the gradients over the replicas of `comm` inside every step
  // (GpuNet::set_grad_reduce). Before the first step.
  virtual void set_grad_reduce(const GradReduceConfig& config) {
    if (config.comm) throw Error("this backend trains alone (no gradient all-reduce)");
  }
  // Timed eager steps without update (every replica must call it together); zeros without a
  // communicator.
  virtual ReduceTiming time_grad_reduce(int /*iters*/) { return {}; }
};

std::unique_ptr<TrainBackend> make_cpu_backend(const BackendConfig& config);
// On GPU config.device; throws Error when the net does not fit in its memory.
std::unique_ptr<TrainBackend> make_gpu_backend(const BackendConfig& config);

// The plans both backends build: the training net (stage train, with gradients) and the
// validation net (stage val, forward only, its own batch).
NetPlan plan_train_net(const BackendConfig& config);
NetPlan plan_val_net(const BackendConfig& config);

}  // namespace incept

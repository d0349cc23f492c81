// The loader-to-net path of one GPU net. A decoded batch (data/loader.h: one pinned block of
// uint8 HWC images | crop params | labels) crosses the bus as one async copy on a copy
// stream into one of two device slots, so batch k+1 is copied while step k runs; then, on
// the net's stream just before its step, Caffe's transform (crop, mirror, mean image, scale;
// kernels/input_transform_gpu.h) writes the net's input blob (NCHW or NHWC, fp32 or bf16)
// and the labels are copied into the net's label buffer. The uint8 copy is a quarter of what
// an fp32 batch would move. Nothing here waits for the host.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "data/loader.h"
#include "engine/gpu_net.h"
#include "engine/owners.h"

namespace incept {

// Page-locked host memory (cudaHostAlloc) for the loader's batches, so their copy to the
// device is asynchronous.
data::HostAllocator pinned_allocator();

struct GpuInputConfig {
  int channels = 3, src_h = 0, src_w = 0;  // records: src_h x src_w x channels uint8
  float scale = 1.f;
  std::vector<float> mean_chw;     // mean image [channels, src_h, src_w] (BGR), or empty
  std::vector<float> mean_values;  // per-channel mean used when mean_chw is empty, or empty
};

class GpuInput {
 public:
  // `net` must outlive this; its input blob's H x W is the crop.
  GpuInput(GpuNet& net, const GpuInputConfig& config);
  GpuInput(const GpuInput&) = delete;
  GpuInput& operator=(const GpuInput&) = delete;

  // Enqueues the copy and the transform of `batch`. `release` runs (from a later call or
  // drain()) once the copy out of the batch's memory has finished.
  void enqueue(const data::Batch& batch, std::function<void()> release);
  // Runs the releases whose copies finished; with wait, waits for all of them first.
  void poll(bool wait);

 private:
  GpuNet& net_;
  GpuInputConfig cfg_;
  Stream copy_stream_;
  DeviceBuffer mean_;      // fp32 [C, H, W] or empty
  DeviceBuffer slots_[2];  // device copies of batch blocks
  Event copied_[2];        // copy into slot i done (copy stream)
  Event consumed_[2];      // transform out of slot i done (net stream)
  bool slot_used_[2] = {false, false};
  int next_slot_ = 0;
  struct Pending {
    int slot;
    std::function<void()> release;
  };
  std::deque<Pending> pending_;
};

}  // namespace incept

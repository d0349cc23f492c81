// The loader-to-net path of one GPU net (gpu_input.h).
#include "engine/gpu_input.h"

#include <fmt/format.h>

#include "engine/check.h"
#include "kernels/input_transform_gpu.h"

namespace incept {

data::HostAllocator pinned_allocator() {
  return {[](std::size_t n) {
            void* p = nullptr;
            CUDA_CHECK(cudaHostAlloc(&p, n, cudaHostAllocDefault));
            return p;
          },
          [](void* p) { cudaFreeHost(p); }};
}

static_assert(sizeof(data::CropParams) == sizeof(kernels::CropParams) &&
                  offsetof(data::CropParams, x0) == offsetof(kernels::CropParams, x0) &&
                  offsetof(data::CropParams, mirror) == offsetof(kernels::CropParams, mirror),
              "the loader's crop records are read by the transform kernel as they are");

GpuInput::GpuInput(GpuNet& net, const GpuInputConfig& config) : net_(net), cfg_(config) {
  copy_stream_ = make_stream();
  for (int i = 0; i < 2; ++i) {
    copied_[i] = make_event(false);
    consumed_[i] = make_event(false);
  }
  if (!cfg_.mean_chw.empty()) {
    if (std::int64_t(cfg_.mean_chw.size()) != std::int64_t(cfg_.channels) * cfg_.src_h * cfg_.src_w)
      throw Error(fmt::format("the mean image holds {} values, the records {}x{}x{}", cfg_.mean_chw.size(),
                              cfg_.channels, cfg_.src_h, cfg_.src_w));
    mean_ = DeviceBuffer(cfg_.mean_chw.size() * 4);
    mean_.upload(cfg_.mean_chw.data(), mean_.bytes());
  }
}

void GpuInput::poll(bool wait) {
  while (!pending_.empty()) {
    Pending& p = pending_.front();
    if (wait) {
      CUDA_CHECK(cudaEventSynchronize(copied_[p.slot]));
    } else {
      const cudaError_t q = cudaEventQuery(copied_[p.slot]);
      if (q == cudaErrorNotReady) break;
      CUDA_CHECK(q);
    }
    auto release = std::move(p.release);
    pending_.pop_front();
    release();
  }
}

void GpuInput::enqueue(const data::Batch& b, std::function<void()> release) {
  const NetPlan& plan = net_.plan();
  const Nchw& in = plan.blobs[plan.data_blob].shape;
  if (b.n != in.n) throw Error(fmt::format("batch of {} images for a net of batch {}", b.n, in.n));
  const int slot = next_slot_;
  next_slot_ ^= 1;
  // The slot's previous batch: its copy must be done (and released) before the slot's event is
  // recorded again, and its transform must have read the slot before it is overwritten.
  // Pending copies alternate between the two slots, so the slot's previous batch, if still
  // pending, is the oldest entry.
  poll(false);
  if (!pending_.empty() && pending_.front().slot == slot) {
    CUDA_CHECK(cudaEventSynchronize(copied_[slot]));
    auto r = std::move(pending_.front().release);
    pending_.pop_front();
    r();
  }
  if (slots_[slot].bytes() < b.block_bytes) slots_[slot] = DeviceBuffer(b.block_bytes);
  if (slot_used_[slot]) CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, consumed_[slot], 0));
  CUDA_CHECK(
      cudaMemcpyAsync(slots_[slot].data(), b.block, b.block_bytes, cudaMemcpyHostToDevice, copy_stream_));
  CUDA_CHECK(cudaEventRecord(copied_[slot], copy_stream_));
  slot_used_[slot] = true;
  pending_.push_back({slot, std::move(release)});

  // On the net's stream: wait for the copy, transform into the input blob, copy the labels.
  cudaStream_t s = net_.stream();
  CUDA_CHECK(cudaStreamWaitEvent(s, copied_[slot], 0));
  const char* base = slots_[slot].as<char>();
  const auto* block = static_cast<const char*>(b.block);
  const auto* pixels =
      reinterpret_cast<const std::uint8_t*>(base + (reinterpret_cast<const char*>(b.pixels) - block));
  const auto* crops =
      reinterpret_cast<const kernels::CropParams*>(base + (reinterpret_cast<const char*>(b.crops) - block));
  const auto* labels =
      reinterpret_cast<const std::int32_t*>(base + (reinterpret_cast<const char*>(b.labels) - block));
  kernels::InputTransform t;
  t.src_h = cfg_.src_h;
  t.src_w = cfg_.src_w;
  t.channels = cfg_.channels;
  t.crop = in.h;
  t.scale = cfg_.scale;
  t.mean_image = mean_.bytes() ? mean_.as<float>() : nullptr;
  for (std::size_t c = 0; c < cfg_.mean_values.size() && c < 3; ++c) t.mean_values[c] = cfg_.mean_values[c];
  t.channels_last = net_.options().channels_last;
  if (net_.options().dtype == kernels::DType::kF32)
    kernels::input_transform_fwd<float>(t, pixels, crops, in, static_cast<float*>(net_.data()), s);
  else
    kernels::input_transform_fwd<__nv_bfloat16>(t, pixels, crops, in,
                                                static_cast<__nv_bfloat16*>(net_.data()), s);
  CUDA_CHECK(cudaMemcpyAsync(net_.labels(), labels, std::size_t(b.n) * 4, cudaMemcpyDeviceToDevice, s));
  CUDA_CHECK(cudaEventRecord(consumed_[slot], s));
}

}  // namespace incept

// The GPU backend of the trainer (train_backend.h): a training GpuNet (the step as one CUDA
// graph) and a forward-only validation GpuNet sharing its GpuParams, each fed by a GpuInput
// (async uint8 copy + transform kernel just before the graph). Training outputs are summed on
// the device inside the graph; nothing here synchronizes except the calls that return numbers.
#include <fmt/format.h>

#include <array>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/gpu_input.h"
#include "engine/nccl_comm.h"
#include "engine/train_backend.h"

namespace incept {
namespace {

// A CUDA out-of-memory while the nets are built becomes a message the user can act on.
[[noreturn]] void rethrow_oom(const CudaError& e, const BackendConfig& c) {
  const std::string what = e.what();
  if (what.find("out of memory") != std::string::npos || what.find("ALLOC_FAILED") != std::string::npos)
    throw Error(
        fmt::format("batch {} (validation batch {}) does not fit in the memory of GPU {} ({}); "
                    "use a smaller --batch-size",
                    c.batch, c.val_batch, c.device, describe_gpu(c.device)));
  throw e;
}

class GpuBackend final : public TrainBackend {
 public:
  explicit GpuBackend(const BackendConfig& c) : c_(c) {
    CUDA_CHECK(cudaSetDevice(c.device));
    GpuNetOptions o = c.gpu;
    o.dropout_seed = c.dropout_seed;
    GpuInputConfig in{c.channels, c.src_h, c.src_w, c.scale, c.mean_chw, c.mean_values};
    try {
      train_ = std::make_unique<GpuNet>(plan_train_net(c), o);
      train_in_ = std::make_unique<GpuInput>(*train_, in);
      if (c.val_batch > 0) {
        val_ = std::make_unique<GpuNet>(plan_val_net(c), o, train_->params());
        val_in_ = std::make_unique<GpuInput>(*val_, in);
      }
    } catch (const CudaError& e) {
      rethrow_oom(e, c);
    }
    sync_ = make_event(false);
  }

  ~GpuBackend() override {
    try {
      drain();
    } catch (...) {  // a destructor never throws; the error was reported where it happened
    }
  }

  std::string describe() const override {
    const GpuNetOptions& o = train_->options();
    const int winograd = train_->winograd_layers();
    return fmt::format(
        "GPU {}: {}, {}{} {}{}{}{}", c_.device, describe_gpu(c_.device), kernels::dtype_name(o.dtype),
        o.dtype == kernels::DType::kF32 ? (o.tf32x3 ? " (3xTF32 GEMMs)" : " (strict GEMMs)") : "",
        o.channels_last ? "channels-last" : "NCHW",
        winograd ? fmt::format(", {} 3x3 layers as Winograd F(2x2,3x3)", winograd) : std::string(),
        train_->options().deterministic ? ", deterministic" : "",
        train_->options().round_grads_bf16 ? ", gradients rounded to bf16 (experiment)" : "");
  }
  std::string memory_report() const override {
    std::string s = "training net: " + train_->memory_report();
    if (val_) s += "\nvalidation net (shares the parameters): " + val_->memory_report();
    return s;
  }
  const NetPlan& train_plan() const override { return train_->plan(); }

  void init_params(std::uint64_t seed) override { train_->init_params(seed); }
  void get_params(std::span<float> h) override { train_->get_params(h); }
  void set_params(std::span<const float> h) override { train_->set_params(h); }
  void get_momentum(std::span<float> h) override { train_->get_momentum(h); }
  void set_momentum(std::span<const float> h) override { train_->set_momentum(h); }

  void train_step(const data::Batch& b, const StepValues& v, Release release) override {
    if (group_) group_->check();                // no NCCL work on aborted communicators
    train_in_->enqueue(b, std::move(release));  // may wait for an old step (ended by an abort)
    if (group_) group_->check();
    train_->train_step(v, c_.graph);
    if (group_) watch_step(fmt::format("gradient all-reduce of iteration {}", v.iteration));
  }

  OutputSums take_train_sums() override {
    train_in_->poll(false);
    OutputSums s = train_->take_output_sums();
    if (group_) group_->check();  // the sums of aborted steps are not numbers to report
    return s;
  }

  void val_begin() override {
    if (!val_) throw Error("no validation net (validation batch 0)");
    val_->take_output_sums();  // zeroes the sums (and waits for the last pass)
    // The validation net reads the weights the training stream last wrote.
    CUDA_CHECK(cudaEventRecord(sync_, train_->stream()));
    CUDA_CHECK(cudaStreamWaitEvent(val_->stream(), sync_, 0));
  }

  void val_batch(const data::Batch& b, Release release) override {
    val_in_->enqueue(b, std::move(release));
    val_->forward_step(StepValues{});
    val_->accumulate_outputs(double(b.n_valid));
  }

  OutputSums val_sums() override {
    OutputSums s = val_->take_output_sums();  // synchronizes the validation stream
    val_in_->poll(true);
    return s;
  }

  void bind_thread() override { CUDA_CHECK(cudaSetDevice(c_.device)); }

  void set_grad_reduce(const GradReduceConfig& config) override {
    CUDA_CHECK(cudaSetDevice(c_.device));
    GradReduceOptions o;
    o.comm = config.comm;
    o.sum_fp32 = config.sum_fp32;
    train_->set_grad_reduce(o);
    group_ = config.comm ? config.group : nullptr;
    step_timeout_s_ = config.step_timeout_s;
    if (group_)
      for (Event& e : step_done_) e = make_event(false);
  }

  ReduceTiming time_grad_reduce(int iters) override {
    CUDA_CHECK(cudaSetDevice(c_.device));
    StepValues v;
    v.grad_scale = 0.f;
    GpuNet& n = *train_;
    // Watched like training steps: no NCCL work after an abort, and a stuck peer is bounded.
    auto guard = [this](bool enqueued) {
      if (!group_) return;
      if (enqueued)
        watch_step("timed gradient all-reduce");
      else
        group_->check();
    };
    // Steps without update: the weights stay as they are. NCCL connects outside any capture.
    for (int i = 0; i < 2; ++i) {
      guard(false);
      n.train_step(v, false, false);
      guard(true);
    }
    const ReduceTiming t = n.time_grad_reduce(v, iters, guard);
    n.take_output_sums();
    guard(false);
    return t;
  }

  void drain() override {
    if (train_) CUDA_CHECK(cudaStreamSynchronize(train_->stream()));
    if (val_) CUDA_CHECK(cudaStreamSynchronize(val_->stream()));
    if (train_in_) train_in_->poll(true);
    if (val_in_) val_in_->poll(true);
    if (group_) group_->check();
  }

 private:
  BackendConfig c_;
  std::unique_ptr<GpuNet> train_, val_;
  std::unique_ptr<GpuInput> train_in_, val_in_;
  Event sync_;
  // The watchdog follows each step's end (data parallel). An event is re-recorded kStepEvents
  // steps later, by when its step has long finished (or the watchdog has aborted the all-reduce
  // holding it, which ends the step).
  void watch_step(std::string what) {
    Event& e = step_done_[steps_++ % step_done_.size()];
    CUDA_CHECK(cudaEventSynchronize(e));
    group_->check();
    CUDA_CHECK(cudaEventRecord(e, train_->stream()));
    group_->watch(e, step_timeout_s_, std::move(what));
  }

  static constexpr std::size_t kStepEvents = 16;
  NcclGroup* group_ = nullptr;  // watches the steps (data parallel)
  double step_timeout_s_ = 0;
  std::array<Event, kStepEvents> step_done_;
  std::uint64_t steps_ = 0;
};

}  // namespace

std::unique_ptr<TrainBackend> make_gpu_backend(const BackendConfig& config) {
  return std::make_unique<GpuBackend>(config);
}

}  // namespace incept

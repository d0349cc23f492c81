// The CPU reference backend of the trainer (train_backend.h): CpuNet<float> for training and
// validation on one CpuParams store, Caffe's transform through kernels/transform_ref.h, SGD
// through kernels/sgd_ref.h. Everything runs synchronously, so a batch is released at once.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "engine/check.h"
#include "engine/cpu_net.h"
#include "engine/train_backend.h"
#include "kernels/sgd_ref.h"
#include "kernels/transform_ref.h"

namespace incept {

namespace {
// The net for one stage: the records' channels, the crop (or the whole record) and the classes.
NetPlan plan_stage(const BackendConfig& c, Stage stage, bool training, int batch) {
  PlanOptions po;
  po.stage = stage;
  po.training = training;
  po.batch = batch;
  po.channels = c.channels;
  po.height = c.crop > 0 ? c.crop : c.src_h;
  po.width = c.crop > 0 ? c.crop : c.src_w;
  po.num_classes = c.num_classes;
  return plan_net(c.spec, po);
}
}  // namespace

NetPlan plan_train_net(const BackendConfig& c) {
  return plan_stage(c, Stage::kTrain, true, c.batch);
}

NetPlan plan_val_net(const BackendConfig& c) {
  return plan_stage(c, Stage::kVal, false, c.val_batch);
}

namespace {

class CpuBackend final : public TrainBackend {
 public:
  explicit CpuBackend(const BackendConfig& c) : c_(c), train_(plan_train_net(c)) {
    train_.set_dropout_seed(c.dropout_seed);
    if (c.val_batch > 0) {
      NetPlan vp = plan_val_net(c);
      // The same learnable layers in the same order: the validation net reads the training
      // net's parameters in place.
      if (vp.param_elems != train_.plan().param_elems)
        throw Error("the validation net's parameters differ from the training net's");
      val_ = std::make_unique<CpuNet<float>>(std::move(vp), train_.param_store());
    }
    if (!c_.mean_chw.empty() &&
        std::int64_t(c_.mean_chw.size()) != std::int64_t(c_.channels) * c_.src_h * c_.src_w)
      throw Error("the mean image does not match the records' size");
  }

  std::string describe() const override {
    return fmt::format("CPU reference (fp32, {} hardware threads)", std::thread::hardware_concurrency());
  }
  std::string memory_report() const override {
    auto mib = [](std::int64_t elems) { return double(elems) * 4 / (1 << 20); };
    return fmt::format(
        "host memory: training activations {:.1f} MiB, validation activations {:.1f} MiB, "
        "params {:.1f} MiB x3",
        mib(train_.plan().activation_elems), val_ ? mib(val_->plan().activation_elems) : 0.0,
        mib(train_.plan().param_elems));
  }
  const NetPlan& train_plan() const override { return train_.plan(); }

  void init_params(std::uint64_t seed) override { train_.init_params(seed); }
  void get_params(std::span<float> h) override { copy_out(train_.params(), h); }
  void set_params(std::span<const float> h) override { copy_in(h, train_.params()); }
  void get_momentum(std::span<float> h) override { copy_out(train_.momentum(), h); }
  void set_momentum(std::span<const float> h) override { copy_in(h, train_.momentum()); }

  void train_step(const data::Batch& b, const StepValues& v, Release release) override {
    load(b, train_);
    release();
    train_.zero_grads();
    train_.forward(v.iteration);
    train_.backward();
    const NetPlan& plan = train_.plan();
    for (std::size_t p = 0; p < plan.params.size(); ++p) {
      const ParamPlan& pp = plan.params[p];
      float* g = train_.grad(int(p));
      if (v.grad_scale != 1.f)
        for (std::int64_t i = 0; i < pp.count; ++i) g[i] *= v.grad_scale;
      ref::sgd_update<float>(pp.count, v.lr * pp.lr_mult, v.momentum, v.weight_decay * pp.decay_mult,
                             train_.param(int(p)), g, train_.momentum().data() + pp.offset);
    }
    add(train_sums_, train_.scalar_outputs(), 1.0);
  }

  OutputSums take_train_sums() override { return std::exchange(train_sums_, {}); }

  void val_begin() override {
    if (!val_) throw Error("no validation net (validation batch 0)");
    val_sums_.clear();
  }
  void val_batch(const data::Batch& b, Release release) override {
    load(b, *val_);
    release();
    val_->forward(0);
    add(val_sums_, val_->scalar_outputs(), double(b.n_valid));
  }
  OutputSums val_sums() override { return val_sums_; }
  void drain() override {}

 private:
  static void copy_out(std::span<const float> from, std::span<float> to) {
    if (from.size() != to.size()) throw Error("parameter copy: size mismatch");
    std::copy(from.begin(), from.end(), to.begin());
  }
  static void copy_in(std::span<const float> from, std::span<float> to) { copy_out(from, to); }

  static void add(OutputSums& sums, const std::vector<std::pair<std::string, float>>& outs, double weight) {
    if (sums.empty())
      for (const auto& [name, v] : outs) sums.emplace_back(name, 0.0);
    for (std::size_t i = 0; i < outs.size() && i < sums.size(); ++i)
      sums[i].second += weight * outs[i].second;
  }

  // Caffe's transform of every image of the batch into the net's input (dense NCHW fp32).
  void load(const data::Batch& b, CpuNet<float>& net) {
    const NetPlan& plan = net.plan();
    const Nchw& in = plan.blobs[plan.data_blob].shape;
    if (b.n != in.n) throw Error(fmt::format("batch of {} images for a net of batch {}", b.n, in.n));
    const std::size_t image = std::size_t(c_.src_h) * c_.src_w * c_.channels;
    for (int i = 0; i < b.n; ++i) {
      ref::TransformParams t;
      t.crop_h = in.h;
      t.crop_w = in.w;
      t.y0 = b.crops[i].y0;
      t.x0 = b.crops[i].x0;
      t.mirror = b.crops[i].mirror != 0;
      t.scale = c_.scale;
      t.mean_image = c_.mean_chw.empty() ? nullptr : c_.mean_chw.data();
      t.mean_values = c_.mean_chw.empty() && !c_.mean_values.empty() ? c_.mean_values.data() : nullptr;
      ref::transform_image<float>(b.pixels + i * image, ref::PixelLayout::kHwc, c_.channels, c_.src_h,
                                  c_.src_w, t, net.data() + i * in.image());
    }
    std::memcpy(net.labels(), b.labels, std::size_t(b.n) * 4);
  }

  BackendConfig c_;
  CpuNet<float> train_;
  std::unique_ptr<CpuNet<float>> val_;
  OutputSums train_sums_, val_sums_;
};

}  // namespace

std::unique_ptr<TrainBackend> make_cpu_backend(const BackendConfig& config) {
  return std::make_unique<CpuBackend>(config);
}

}  // namespace incept

// Classifier (classifier.h): model files -> planned deploy net -> probabilities.
#include "engine/classifier.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>

#include "data/datum.h"
#include "engine/check.h"
#include "engine/cpu_net.h"
#include "engine/device.h"
#include "engine/gpu_net.h"

namespace incept {
namespace {

// train_val's data layer of the validation phase (else the first Data layer), if any.
const caffe::LayerParameter* val_data_layer(const caffe::NetParameter& tv) {
  const caffe::LayerParameter* first = nullptr;
  for (const caffe::LayerParameter& l : tv.layer()) {
    if (l.type() != "Data") continue;
    if (!first) first = &l;
    for (const auto& r : l.include())
      if (r.has_phase() && r.phase() == caffe::TEST) return &l;
  }
  return first;
}

data::MeanBlob parse_mean(const std::string& bytes) {
  caffe::BlobProto b;
  if (!b.ParseFromString(bytes)) throw Error("mean.binaryproto is not a BlobProto");
  data::MeanBlob m;
  if (b.has_num() || b.has_channels() || b.has_height() || b.has_width()) {
    m.channels = b.channels(), m.height = b.height(), m.width = b.width();
  } else if (b.shape().dim_size() >= 3) {
    const int n = b.shape().dim_size();
    m.channels = int(b.shape().dim(n - 3)), m.height = int(b.shape().dim(n - 2)),
    m.width = int(b.shape().dim(n - 1));
  }
  m.chw.assign(b.data().begin(), b.data().end());
  if (m.chw.size() != std::size_t(m.channels) * m.height * m.width || m.chw.empty())
    throw Error(
        fmt::format("mean.binaryproto: {} values for {}x{}x{}", m.chw.size(), m.channels, m.height, m.width));
  return m;
}

// The top of the deploy net's (last) Softmax layer.
std::string softmax_top(const NetSpec& spec) {
  for (auto it = spec.layers.rbegin(); it != spec.layers.rend(); ++it)
    if (it->kind() == LayerKind::kSoftmax && it->in_stage(Stage::kDeploy)) return it->tops.at(0);
  throw Error("deploy.prototxt has no Softmax layer: classify needs the class probabilities");
}

}  // namespace

data::InputTransform input_transform(const ModelFiles& files) {
  const caffe::NetParameter deploy = parse_net_prototxt(files.deploy_prototxt, "deploy.prototxt");
  const std::vector<std::int64_t> in = deploy_input_shape(deploy);
  data::InputTransform t;
  t.channels = int(in[1]);
  t.input_height = int(in[2]), t.input_width = int(in[3]);
  t.record_height = t.input_height, t.record_width = t.input_width;
  std::optional<data::MeanBlob> mean;
  if (!files.mean_binaryproto.empty()) {
    mean = parse_mean(files.mean_binaryproto);
    t.record_height = mean->height, t.record_width = mean->width;
  }
  if (!files.info_json.empty()) {
    try {
      const nlohmann::json info = nlohmann::json::parse(files.info_json);
      if (info.contains("image dimensions")) {
        const auto dims = info["image dimensions"].get<std::vector<int>>();
        if (dims.size() == 3) t.record_height = dims[0], t.record_width = dims[1];
      }
      if (info.contains("image resize mode"))
        t.resize = data::parse_resize_mode(info["image resize mode"].get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("info.json: {}", e.what()));
    }
  }
  t.mean = mean ? data::MeanMode::kImage : data::MeanMode::kNone;
  if (!files.train_val_prototxt.empty()) {
    const caffe::NetParameter tv = parse_net_prototxt(files.train_val_prototxt, "train_val.prototxt");
    if (const caffe::LayerParameter* d = val_data_layer(tv)) {
      const caffe::TransformationParameter& tp = d->transform_param();
      t.scale = tp.scale();
      if (tp.mean_value_size() > 0) {
        t.mean = data::MeanMode::kPixel;
        t.mean_pixel.assign(tp.mean_value().begin(), tp.mean_value().end());
        if (t.mean_pixel.size() == 1) t.mean_pixel.resize(std::size_t(t.channels), t.mean_pixel[0]);
      } else if (tp.has_mean_file()) {
        if (!mean)
          throw Error("train_val.prototxt subtracts a mean file but the model has no mean.binaryproto");
        t.mean = data::MeanMode::kImage;
      } else {
        t.mean = data::MeanMode::kNone;
      }
    }
  }
  if (t.mean == data::MeanMode::kImage) t.mean_image = *mean;
  data::validate_transform(t);
  return t;
}

std::vector<Prediction> top_k(std::span<const float> p, int k, const std::vector<std::string>& labels) {
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  k = std::clamp(k, 0, int(p.size()));
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  std::vector<Prediction> out;
  for (int i = 0; i < k; ++i) {
    const int c = order[i];
    out.push_back({c, c < int(labels.size()) ? labels[c] : fmt::format("class {}", c), p[c]});
  }
  return out;
}

struct Classifier::Backend {
  virtual ~Backend() = default;
  virtual float* input() = 0;                        // batch x C x H x W host staging (NCHW fp32)
  virtual std::vector<float> forward(int blob) = 0;  // the blob's values after a forward
};

namespace {

struct CpuBackend : Classifier::Backend {
  explicit CpuBackend(NetPlan plan) : net(std::move(plan)) {}
  float* input() override { return net.data(); }
  std::vector<float> forward(int blob) override {
    net.forward();
    const float* p = net.blob_data(blob);
    return std::vector<float>(p, p + net.plan().blobs[blob].shape.count());
  }
  CpuNet<float> net;
};

struct GpuBackend : Classifier::Backend {
  GpuBackend(NetPlan plan, std::span<const float> params)
      : staging(std::size_t(plan.blobs[plan.data_blob].shape.count())),
        net(std::move(plan), GpuNetOptions{}) {
    net.set_params(params);
  }
  float* input() override { return staging.data(); }
  std::vector<float> forward(int blob) override {
    net.set_input(staging);
    net.forward_step(StepValues{});
    return net.blob_data(blob);
  }
  std::vector<float> staging;
  GpuNet net;
};

}  // namespace

Classifier::Classifier(const ModelFiles& files, int batch, int gpu) : batch_(batch) {
  if (batch < 1) throw Error("the batch size must be at least 1");
  transform_ = input_transform(files);
  labels_ = files.labels();
  const caffe::NetParameter deploy = parse_net_prototxt(files.deploy_prototxt, "deploy.prototxt");
  const NetSpec spec = net_spec_from_prototxt(deploy);
  output_ = softmax_top(spec);
  PlanOptions o;
  o.stage = Stage::kDeploy;
  o.training = false;
  o.batch = batch;
  o.channels = transform_.channels;
  o.height = transform_.input_height, o.width = transform_.input_width;
  NetPlan plan = plan_net(spec, o);
  output_blob_ = plan.blob(output_);
  classes_ = int(plan.blobs[output_blob_].shape.image());
  std::vector<float> params(std::size_t(plan.param_elems), 0.f);
  const ImportReport r =
      import_params(parse_caffemodel(files.caffemodel, files.caffemodel_name), plan, params);
  if (!r.missing.empty() || !r.skipped_shape.empty())
    throw Error(fmt::format("{} does not fit deploy.prototxt: {}", files.caffemodel_name,
                            r.missing.empty() ? r.skipped_shape[0] : "no weights for layer " + r.missing[0]));
  if (!labels_.empty() && int(labels_.size()) != classes_)
    throw Error(fmt::format("labels.txt has {} labels, the network {} outputs", labels_.size(), classes_));
  if (gpu < 0) {
    auto cpu = std::make_unique<CpuBackend>(std::move(plan));
    std::copy(params.begin(), params.end(), cpu->net.params().begin());
    backend_ = std::move(cpu);
  } else {
    if (gpu >= gpu_count())
      throw Error(
          gpu_count() == 0
              ? fmt::format("no CUDA GPU here ({}); classify on the CPU with --gpus none", no_gpu_reason())
              : fmt::format("GPU {} does not exist ({} found)", gpu, gpu_count()));
    CUDA_CHECK(cudaSetDevice(gpu));
    backend_ = std::make_unique<GpuBackend>(std::move(plan), params);
  }
}

Classifier::~Classifier() = default;

std::vector<std::vector<float>> Classifier::classify_inputs(std::span<const float> x, int n) {
  const std::size_t image =
      std::size_t(transform_.channels) * transform_.input_height * transform_.input_width;
  if (x.size() != image * std::size_t(n))
    throw Error(fmt::format("{} input values for {} images", x.size(), n));
  std::vector<std::vector<float>> out;
  for (int first = 0; first < n; first += batch_) {
    const int m = std::min(batch_, n - first);
    float* in = backend_->input();
    std::copy(x.begin() + std::ptrdiff_t(first * image), x.begin() + std::ptrdiff_t((first + m) * image), in);
    std::fill(in + m * image, in + batch_ * image, 0.f);  // a short last batch: zero images, ignored
    const std::vector<float> p = backend_->forward(output_blob_);
    for (int i = 0; i < m; ++i)
      out.emplace_back(p.begin() + std::ptrdiff_t(i) * classes_,
                       p.begin() + std::ptrdiff_t(i + 1) * classes_);
  }
  return out;
}

std::vector<std::vector<float>> Classifier::classify(const std::vector<data::Image>& images) {
  const std::size_t image =
      std::size_t(transform_.channels) * transform_.input_height * transform_.input_width;
  std::vector<float> x(image * images.size());
  for (std::size_t i = 0; i < images.size(); ++i)
    data::preprocess_image(images[i], transform_, x.data() + i * image);
  return classify_inputs(x, int(images.size()));
}

}  // namespace incept

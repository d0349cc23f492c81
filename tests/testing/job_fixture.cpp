// The job folder of the export and classify tests (job_fixture.h).
#include "testing/job_fixture.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "data/datum.h"
#include "data/idx.h"
#include "data/resize.h"
#include "engine/caffe_model.h"
#include "engine/fillers.h"
#include "models/models.h"

namespace incept::testing {
namespace {

const data::IdxArray& fashion_images() {
  static const data::IdxArray a = data::read_idx(data::fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz");
  return a;
}

}  // namespace

data::Image fashion_image(int i) {
  return data::idx_image(fashion_images(), i);
}

int fashion_label(int i) {
  static const data::IdxArray a = data::read_idx(data::fashion_mnist_dir() + "/t10k-labels-idx1-ubyte.gz");
  return a.values.at(std::size_t(i));
}

JobFixture::JobFixture(const std::string& net, const std::vector<std::int64_t>& iters) : network(net) {
  const bool google = network == "googlenet";
  height = width = google ? 256 : 28;
  channels = google ? 3 : 1;
  crop = google ? 224 : 0;
  const nlohmann::json job = {{"version", 1},
                              {"name", dir.path().filename().string()},
                              {"network", network},
                              {"created", "2026-11-30T02:00:00Z"},
                              {"dataset", (dir.path() / "no_dataset").string()},
                              {"num_classes", 10},
                              {"image_dims", {height, width, channels}},
                              {"resize_mode", "squash"},
                              {"crop_size", crop},
                              {"mean", "image"},
                              {"batch_size", 4},
                              {"val_batch_size", 4},
                              {"epochs", 2},
                              {"seed", 1},
                              {"precision", "fp32"},
                              {"gpus", nlohmann::json::array()},
                              {"solver",
                               {{"base_lr", 0.01},
                                {"lr_policy", "step"},
                                {"gamma", 0.1},
                                {"power", 1},
                                {"stepsize", 7},
                                {"stepvalue", nlohmann::json::array()},
                                {"max_iter", 20},
                                {"momentum", 0.9},
                                {"weight_decay", 0.0001},
                                {"snapshot", 10},
                                {"test_interval", 10},
                                {"test_iter", 3},
                                {"display", 2},
                                {"train_iter", 10}}}};
  std::ofstream(dir / "job.json") << job.dump(2);
  std::ofstream labels(dir / "labels.txt");
  for (const std::string& l : data::fashion_mnist_class_names()) labels << l << "\n";
  labels.close();
  // The mean of a few records: Fashion-MNIST images fitted (squash) to the record size.
  data::MeanAccumulator mean(width, height, channels);
  for (int i = 0; i < 32; ++i)
    mean.add(data::fit_image(data::to_channels(fashion_image(1000 + i), channels), width, height,
                             data::ResizeMode::kSquash, 0));
  std::ofstream(dir / "mean.binaryproto", std::ios::binary) << data::mean_blobproto(mean.mean());

  const NetSpec spec = models::by_name(network);
  const float kSharpen = google ? 5.f : 20.f;
  PlanOptions o;
  o.batch = 1;
  o.num_classes = 10;
  o.channels = channels;
  o.height = o.width = google ? crop : height;
  train_plan = plan_net(spec, o);
  params.assign(std::size_t(train_plan.param_elems), 0.f);
  for (std::int64_t iter : iters) {
    fill_params(train_plan, std::uint64_t(iter), params.data());
    // A sharper classifier than the filler gives, so that predictions differ between images
    // (not so sharp that the softmax saturates: the tests compare probabilities).
    const ParamPlan& cls =
        train_plan.params[train_plan.layers[train_plan.find_layer(google ? "loss3/classifier" : "ip2")]
                              .param_ids[0]];
    for (std::int64_t i = 0; i < cls.count; ++i) params[std::size_t(cls.offset + i)] *= kSharpen;
    std::ofstream(dir / fmt::format("snapshot_iter_{}.caffemodel", iter), std::ios::binary)
        << caffemodel_bytes(spec, train_plan, params, BlobFormat::kCompatible);
  }
}

}  // namespace incept::testing

// A small training-job folder for the export and classify tests, laid out as train_googlenet
// writes it (/work/notes/contracts.md): job.json, labels.txt, mean.binaryproto (the real mean of
// Fashion-MNIST images fitted to the record size) and snapshot_iter_N.caffemodel files of
// Caffe-filled parameters, written with engine/caffe_model.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "engine/net_plan.h"
#include "testing/test_util.h"

namespace incept::testing {

struct JobFixture {
  // network "googlenet" (records 256x256x3, crop 224) or "lenet" (28x28x1, no crop); 10 classes;
  // train_iter 10, snapshots at `iters`.
  JobFixture(const std::string& network, const std::vector<std::int64_t>& iters);

  TempDir dir;
  std::string network;
  int height = 0, width = 0, channels = 0, crop = 0;
  NetPlan train_plan;         // the trainer's plan (batch 1, 10 classes)
  std::vector<float> params;  // the snapshots' parameters (the last one written)
};

// Fashion-MNIST test image i (28x28 grey) and its label.
data::Image fashion_image(int i);
int fashion_label(int i);

}  // namespace incept::testing

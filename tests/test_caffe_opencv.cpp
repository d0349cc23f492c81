// The export's acceptance test: OpenCV's dnn (an independent Caffe importer, what many Jetson
// and desktop users run) loads the deploy.prototxt and caffemodel incept writes for GoogLeNet,
// in both blob formats, and its softmax on real Fashion-MNIST images equals incept's CPU
// inference of the same files (the deploy prototxt read back into a NetSpec, the caffemodel
// imported by layer name) to ~1e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <opencv2/dnn.hpp>

#include "data/idx.h"
#include "data/resize.h"
#include "engine/caffe_model.h"
#include "engine/cpu_net.h"
#include "engine/fillers.h"
#include "engine/solver.h"
#include "models/models.h"
#include "testing/test_util.h"

namespace incept {
namespace {

constexpr int kClasses = 10;
constexpr int kImages = 3;

// Fashion-MNIST test images as a BGR NCHW batch at 224x224 (grey replicated, bilinear resize,
// minus a per-channel mean): real pictures with real structure, as the network would see them.
std::vector<float> fashion_batch(int first, int n) {
  const data::IdxArray images = data::read_idx(data::fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz");
  std::vector<float> x(std::size_t(n) * 3 * 224 * 224);
  const float mean[3] = {104.f, 117.f, 123.f};
  for (int i = 0; i < n; ++i) {
    const data::Image rgb =
        data::resize_bilinear(data::to_channels(data::idx_image(images, first + i), 3), 224, 224);
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 224 * 224; ++p)
        x[(std::size_t(i) * 3 + c) * 224 * 224 + p] =
            float(rgb.pixels[std::size_t(p) * 3 + (2 - c)]) - mean[c];
  }
  return x;
}

std::vector<float> opencv_softmax(const std::string& prototxt, const std::string& caffemodel,
                                  const std::vector<float>& x, int n) {
  cv::dnn::Net net = cv::dnn::readNetFromCaffe(prototxt, caffemodel);
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const int shape[4] = {n, 3, 224, 224};
  const cv::Mat blob(4, shape, CV_32F, const_cast<float*>(x.data()));
  net.setInput(blob);
  const cv::Mat out = net.forward("softmax");
  EXPECT_EQ(out.total(), std::size_t(n) * kClasses);
  return std::vector<float>(out.ptr<float>(), out.ptr<float>() + out.total());
}

std::vector<float> incept_softmax(const std::string& prototxt, const std::string& caffemodel,
                                  const std::vector<float>& x, int n) {
  const caffe::NetParameter deploy = parse_prototxt(prototxt);
  const std::vector<std::int64_t> in = deploy_input_shape(deploy);
  PlanOptions o;
  o.stage = Stage::kDeploy;
  o.batch = n;
  o.channels = int(in[1]), o.height = int(in[2]), o.width = int(in[3]);
  CpuNet<float> net(plan_net(net_spec_from_prototxt(deploy), o));
  const ImportReport r = import_params(read_caffemodel(caffemodel), net.plan(), net.params());
  EXPECT_TRUE(r.missing.empty() && r.skipped_shape.empty());
  std::copy(x.begin(), x.end(), net.data());
  net.forward();
  const float* p = net.blob_data(net.plan().blob("softmax"));
  return std::vector<float>(p, p + std::size_t(n) * kClasses);
}

TEST(CaffeOpenCv, OpenCvRunsOurGoogLeNetToTheSameSoftmax) {
  // Parameters: Caffe's fillers, then a few SGD steps on real images so that the classifier
  // says something (a freshly initialised GoogLeNet answers ~uniformly).
  PlanOptions o;
  o.batch = 4;
  o.num_classes = kClasses;
  CpuNet<float> train(plan_net(models::googlenet(), o));
  train.init_params(5);
  SolverSettings s;
  s.lr.policy = LrPolicy::kFixed;
  s.lr.base_lr = 0.02;
  s.max_iter = 3;
  const data::IdxArray labels = data::read_idx(data::fashion_mnist_dir() + "/t10k-labels-idx1-ubyte.gz");
  SgdSolver<float> solver(train, s);
  for (int step = 0; step < 3; ++step) {
    solver.step([&](int) {
      const std::vector<float> x = fashion_batch(100 + 4 * step, 4);
      std::copy(x.begin(), x.end(), train.data());
      for (int i = 0; i < 4; ++i) train.labels()[i] = labels.values[std::size_t(100 + 4 * step + i)];
    });
  }

  testing::TempDir dir;
  DataSources d;
  d.height = d.width = 256;
  const std::string prototxt = (dir / "deploy.prototxt").string();
  std::ofstream(prototxt) << net_prototxt(net_parameter(models::googlenet(), NetFile::kDeploy, kClasses, &d));
  const std::vector<float> x = fashion_batch(0, kImages);
  for (BlobFormat f : {BlobFormat::kCompatible, BlobFormat::kModern}) {
    const std::string model =
        (dir / (std::string("snapshot_") + blob_format_name(f) + ".caffemodel")).string();
    std::ofstream(model, std::ios::binary)
        << caffemodel_bytes(models::googlenet(), train.plan(), train.params(), f);
    const std::vector<float> ours = incept_softmax(prototxt, model, x, kImages);
    const std::vector<float> theirs = opencv_softmax(prototxt, model, x, kImages);
    ASSERT_EQ(ours.size(), theirs.size());
    const double diff = testing::max_abs_diff(ours, theirs);
    float lo = 1.f, hi = 0.f;
    for (float v : ours) lo = std::min(lo, v), hi = std::max(hi, v);
    std::printf("%s: max |incept - OpenCV| = %.3g over %zu probabilities in [%.4f, %.4f]\n",
                blob_format_name(f), diff, ours.size(), lo, hi);
    EXPECT_LT(diff, 1e-5) << blob_format_name(f);
    EXPECT_GT(hi - lo, 0.05f) << "the softmax must not be uniform for the comparison to mean anything";
    for (int i = 0; i < kImages; ++i) {
      double sum = 0;
      for (int k = 0; k < kClasses; ++k) sum += ours[std::size_t(i) * kClasses + k];
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
  }
}

}  // namespace
}  // namespace incept

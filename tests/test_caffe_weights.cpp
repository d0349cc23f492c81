// caffemodel weights (engine/caffe_model.h): export -> import is bit-identical in both blob
// formats, the blob dims each format writes, every encoding other Caffes write (raw FLOAT /
// FLOAT16 / DOUBLE, double_data, V1 layers), import by name skipping shape mismatches, clear
// errors for broken files, and OpenCV's dnn running our GoogLeNet export (deploy.prototxt +
// caffemodel, both formats) to the softmax incept's CPU net computes on real Fashion-MNIST images.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/caffe_model.h"
#include "engine/check.h"
#include "engine/cpu_net.h"
#include "engine/fillers.h"
#include "engine/log.h"
#include "models/models.h"
#include "testing/test_util.h"

namespace incept {
namespace {

NetPlan googlenet_plan(Stage stage, int classes, int batch) {
  PlanOptions o;
  o.stage = stage;
  o.batch = batch;
  o.num_classes = classes;
  return plan_net(models::googlenet(), o);
}

const caffe::LayerParameter& layer_named(const caffe::NetParameter& net, const std::string& name) {
  for (const auto& l : net.layer())
    if (l.name() == name) return l;
  throw Error("no layer " + name);
}

std::vector<std::int64_t> dims(const caffe::BlobProto& b) {
  return {b.shape().dim().begin(), b.shape().dim().end()};
}

// The trained-looking parameters of a 10-class GoogLeNet training plan (fillers, seed 11).
struct Exported {
  NetPlan plan = googlenet_plan(Stage::kTrain, 10, 1);
  std::vector<float> params = std::vector<float>(plan.param_elems);
  Exported() { fill_params(plan, 11, params.data()); }
};

TEST(CaffeWeights, ExportThenImportIsBitIdenticalInBothFormats) {
  const Exported e;
  for (BlobFormat f : {BlobFormat::kCompatible, BlobFormat::kModern}) {
    const std::string bytes = caffemodel_bytes(models::googlenet(), e.plan, e.params, f);
    EXPECT_GT(bytes.size(), 4u * std::size_t(e.plan.param_count()));
    const auto layers = parse_caffemodel(bytes, "model");
    std::vector<float> back(e.plan.param_elems, 0.f);
    const ImportReport r = import_params(layers, e.plan, back);
    EXPECT_EQ(r.loaded.size(), std::size_t(e.plan.conv_count() + 5));  // + 5 inner products
    EXPECT_TRUE(r.skipped_shape.empty());
    EXPECT_TRUE(r.missing.empty());
    EXPECT_TRUE(r.ignored.empty());
    EXPECT_EQ(std::memcmp(back.data(), e.params.data(), back.size() * sizeof(float)), 0)
        << blob_format_name(f);
    // Into the deploy plan (no auxiliary heads): the heads are ignored, everything else loads.
    const NetPlan deploy = googlenet_plan(Stage::kDeploy, 10, 1);
    std::vector<float> dep(deploy.param_elems, 0.f);
    const ImportReport rd = import_params(layers, deploy, dep);
    EXPECT_EQ(rd.loaded.size(), std::size_t(deploy.conv_count() + 1));
    EXPECT_EQ(rd.ignored.size(), 6u);  // loss{1,2}/{conv,fc,classifier}
    for (const ParamPlan& p : deploy.params) {
      const auto it = std::find_if(e.plan.params.begin(), e.plan.params.end(), [&](const ParamPlan& t) {
        return t.layer == p.layer && t.index == p.index;
      });
      ASSERT_NE(it, e.plan.params.end());
      EXPECT_EQ(std::memcmp(dep.data() + p.offset, e.params.data() + it->offset, p.count * 4), 0) << p.layer;
    }
  }
}

TEST(CaffeWeights, CompatibleWritesLegacyDimsModernWritesShapes) {
  const Exported e;
  caffe::NetParameter compat, modern;
  ASSERT_TRUE(compat.ParseFromString(
      caffemodel_bytes(models::googlenet(), e.plan, e.params, BlobFormat::kCompatible)));
  ASSERT_TRUE(
      modern.ParseFromString(caffemodel_bytes(models::googlenet(), e.plan, e.params, BlobFormat::kModern)));
  const auto& c1 = layer_named(compat, "conv1/7x7_s2").blobs(0);
  EXPECT_EQ((std::vector<int>{c1.num(), c1.channels(), c1.height(), c1.width()}),
            (std::vector<int>{64, 3, 7, 7}));
  EXPECT_FALSE(c1.has_shape());
  EXPECT_FALSE(c1.has_raw_data());
  EXPECT_EQ(c1.data_size(), 64 * 3 * 7 * 7);
  const auto& ip = layer_named(compat, "loss3/classifier");
  EXPECT_EQ((std::vector<int>{ip.blobs(0).num(), ip.blobs(0).channels(), ip.blobs(0).height(),
                              ip.blobs(0).width()}),
            (std::vector<int>{1, 1, 10, 1024}));
  EXPECT_EQ((std::vector<int>{ip.blobs(1).num(), ip.blobs(1).channels(), ip.blobs(1).height(),
                              ip.blobs(1).width()}),
            (std::vector<int>{1, 1, 1, 10}));
  EXPECT_TRUE(ip.blobs(1).has_num());  // on the wire (old readers test has_num())
  EXPECT_EQ(dims(layer_named(modern, "conv1/7x7_s2").blobs(0)), (std::vector<std::int64_t>{64, 3, 7, 7}));
  EXPECT_EQ(dims(layer_named(modern, "loss3/classifier").blobs(0)), (std::vector<std::int64_t>{10, 1024}));
  EXPECT_EQ(dims(layer_named(modern, "loss3/classifier").blobs(1)), (std::vector<std::int64_t>{10}));
  EXPECT_FALSE(layer_named(modern, "loss3/classifier").blobs(1).has_num());
  // Layer parameters as in train_val (phase rules, filled classifier), phase TRAIN.
  const auto& cls = layer_named(compat, "loss3/classifier");
  EXPECT_EQ(cls.inner_product_param().num_output(), 10u);
  EXPECT_EQ(cls.phase(), caffe::TRAIN);
  // Re-encoding converts either way and keeps the values.
  for (BlobFormat to : {BlobFormat::kCompatible, BlobFormat::kModern}) {
    caffe::NetParameter want = to == BlobFormat::kCompatible ? compat : modern;
    for (const caffe::NetParameter* from : {&compat, &modern}) {
      caffe::NetParameter got;
      ASSERT_TRUE(got.ParseFromString(reencode_caffemodel(from->SerializeAsString(), to, "m")));
      ASSERT_EQ(got.layer_size(), want.layer_size());
      for (int l = 0; l < got.layer_size(); ++l)
        for (int b = 0; b < got.layer(l).blobs_size(); ++b)
          EXPECT_EQ(got.layer(l).blobs(b).SerializeAsString(), want.layer(l).blobs(b).SerializeAsString())
              << got.layer(l).name();
    }
  }
}

// A one-layer net whose single blob is encoded by `fill`.
std::string one_blob_model(const std::function<void(caffe::BlobProto*)>& fill) {
  caffe::NetParameter net;
  caffe::LayerParameter* l = net.add_layer();
  l->set_name("ip");
  l->set_type("InnerProduct");
  fill(l->add_blobs());
  return net.SerializeAsString();
}

TEST(CaffeWeights, ReadsEveryEncoding) {
  const std::vector<float> want = {1.f, -2.5f, 0.f, 65504.f, 6.103515625e-05f, 5.960464477539063e-08f};
  // NVCaffe >= 0.16: raw FLOAT16.
  const std::vector<std::uint16_t> halves = {0x3c00, 0xc100, 0x0000, 0x7bff, 0x0400, 0x0001};
  auto got =
      parse_caffemodel(one_blob_model([&](caffe::BlobProto* b) {
                         b->mutable_shape()->add_dim(2);
                         b->mutable_shape()->add_dim(3);
                         b->set_raw_data_type(caffe::BlobProto::FLOAT16);
                         b->set_raw_data(std::string(reinterpret_cast<const char*>(halves.data()), 12));
                       }),
                       "fp16");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].blobs[0].shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(got[0].blobs[0].data, want);
  // raw FLOAT, raw DOUBLE, double_data.
  got = parse_caffemodel(one_blob_model([&](caffe::BlobProto* b) {
                           b->mutable_shape()->add_dim(6);
                           b->set_raw_data_type(caffe::BlobProto::FLOAT);
                           b->set_raw_data(std::string(reinterpret_cast<const char*>(want.data()), 24));
                         }),
                         "fp32");
  EXPECT_EQ(got[0].blobs[0].data, want);
  const std::vector<double> wd(want.begin(), want.end());
  got = parse_caffemodel(one_blob_model([&](caffe::BlobProto* b) {
                           b->mutable_shape()->add_dim(6);
                           b->set_raw_data_type(caffe::BlobProto::DOUBLE);
                           b->set_raw_data(std::string(reinterpret_cast<const char*>(wd.data()), 48));
                         }),
                         "fp64 raw");
  EXPECT_EQ(got[0].blobs[0].data, want);
  got = parse_caffemodel(one_blob_model([&](caffe::BlobProto* b) {
                           b->set_num(1), b->set_channels(1), b->set_height(2), b->set_width(3);
                           for (double v : wd) b->add_double_data(v);
                         }),
                         "double_data");
  EXPECT_EQ(got[0].blobs[0].data, want);
  EXPECT_TRUE(got[0].blobs[0].legacy_dims);
  EXPECT_EQ(got[0].blobs[0].shape, (std::vector<std::int64_t>{1, 1, 2, 3}));
  // V1 `layers` (pre-2015 files such as BVLC's early model zoo).
  caffe::NetParameter v1;
  caffe::V1LayerParameter* l = v1.add_layers();
  l->set_name("conv1");
  l->set_type(caffe::V1LayerParameter::CONVOLUTION);
  caffe::BlobProto* b = l->add_blobs();
  b->set_num(2), b->set_channels(1), b->set_height(1), b->set_width(3);
  for (float v : want) b->add_data(v);
  got = parse_caffemodel(v1.SerializeAsString(), "v1");
  EXPECT_EQ(got[0].name, "conv1");
  EXPECT_EQ(got[0].type, "Convolution");
  EXPECT_EQ(got[0].blobs[0].data, want);
}

TEST(CaffeWeights, ImportSkipsAClassifierOfAnotherClassCount) {
  const Exported e;
  const auto layers =
      parse_caffemodel(caffemodel_bytes(models::googlenet(), e.plan, e.params, BlobFormat::kCompatible), "m");
  const NetPlan five = googlenet_plan(Stage::kTrain, 5, 1);
  std::vector<float> p(five.param_elems, 42.f);
  const ImportReport r = import_params(layers, five, p);
  EXPECT_EQ(r.skipped_shape.size(), 3u);
  for (const std::string& s : r.skipped_shape)
    EXPECT_NE(s.find("classifier: weights 1x1x10x1024 in the file, 5x1024 in the net"), std::string::npos)
        << s;
  EXPECT_EQ(r.loaded.size(), std::size_t(five.conv_count() + 2));
  const ParamPlan& cls = five.params[five.layers[five.find_layer("loss3/classifier")].param_ids[0]];
  EXPECT_EQ(p[cls.offset], 42.f);  // kept its own initialisation
  // A file with a layer the net lacks, and a net layer the file lacks.
  std::vector<CaffeLayerBlobs> partial(layers.begin() + 1, layers.end());
  partial.push_back({"extra", "Convolution", {}});
  const ImportReport r2 = import_params(partial, e.plan, p = std::vector<float>(e.plan.param_elems));
  EXPECT_EQ(r2.missing, (std::vector<std::string>{"conv1/7x7_s2"}));
  EXPECT_EQ(r2.ignored, (std::vector<std::string>{"extra"}));
}

// train_googlenet --weights: fine-tuning a 5-class net from a 10-class model loads everything
// but the three classifiers, and the log names each layer it skipped and why.
TEST(CaffeWeights, LoadWeightsForFineTuningLogsSkippedLayers) {
  const Exported e;
  testing::TempDir dir;
  const std::string path = (dir / "pretrained.caffemodel").string();
  std::ofstream(path, std::ios::binary)
      << caffemodel_bytes(models::googlenet(), e.plan, e.params, BlobFormat::kModern);
  const NetPlan five = googlenet_plan(Stage::kTrain, 5, 1);
  std::vector<float> p(five.param_elems, 0.f);
  std::FILE* log = std::tmpfile();
  set_log_file(log);
  const ImportReport r = load_weights(path, five, p);
  set_log_file(nullptr);
  std::rewind(log);
  std::string text;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, log)) text.append(buf, n);
  std::fclose(log);
  EXPECT_EQ(r.loaded.size(), std::size_t(five.conv_count() + 2));
  EXPECT_EQ(r.skipped_shape.size(), 3u);
  EXPECT_NE(text.find(fmt::format("{} layers loaded", r.loaded.size())), std::string::npos) << text;
  for (const char* name : {"loss1/classifier", "loss2/classifier", "loss3/classifier"})
    EXPECT_NE(text.find(fmt::format("{}: weights 10x1024 in the file, 5x1024 in the net", name)),
              std::string::npos)
        << text;
  // The loaded layers hold the file's values exactly.
  const ParamPlan& c1 = five.params[0];
  EXPECT_EQ(std::memcmp(p.data() + c1.offset, e.params.data() + e.plan.params[0].offset, c1.count * 4), 0);
}

TEST(CaffeWeights, BrokenFilesGiveClearErrors) {
  const Exported e;
  const std::string bytes = caffemodel_bytes(models::googlenet(), e.plan, e.params, BlobFormat::kCompatible);
  for (std::size_t cut : {bytes.size() / 2, bytes.size() - 3, std::size_t(1000)}) {
    const std::string msg = testing::error_of(
        [&] { parse_caffemodel(std::string_view(bytes).substr(0, cut), "cut.caffemodel"); });
    EXPECT_NE(msg.find("cut.caffemodel"), std::string::npos) << cut;
  }
  EXPECT_NE(testing::error_of([] { parse_caffemodel("", "empty"); }).find("no layer has weights"),
            std::string::npos);
  EXPECT_NE(
      testing::error_of([] { parse_caffemodel("name: \"not binary\"\nlayer {}\n", "text"); }).find("text:"),
      std::string::npos);
  EXPECT_NE(testing::error_of([] {
              read_caffemodel("/nonexistent.caffemodel");
            }).find("cannot open /nonexistent.caffemodel"),
            std::string::npos);
  const std::string mismatch = testing::error_of([] {
    parse_caffemodel(one_blob_model([](caffe::BlobProto* b) {
                       b->mutable_shape()->add_dim(4);
                       b->add_data(1.f);
                     }),
                     "short");
  });
  EXPECT_NE(mismatch.find("1 values for a 4 blob"), std::string::npos) << mismatch;
  const std::string bool_raw = testing::error_of([] {
    parse_caffemodel(one_blob_model([](caffe::BlobProto* b) {
                       b->set_raw_data_type(caffe::BlobProto::BOOL);
                       b->set_raw_data("x");
                     }),
                     "bool");
  });
  EXPECT_NE(bool_raw.find("raw_data of type BOOL is not supported"), std::string::npos) << bool_raw;
  const NetPlan plan = googlenet_plan(Stage::kTrain, 10, 1);
  std::vector<float> p(plan.param_elems);
  EXPECT_NE(testing::error_of([&] {
              import_params({{"nothing", "Convolution", {}}}, plan, p);
              testing::TempDir dir;
              std::ofstream(dir / "m.caffemodel", std::ios::binary)
                  << one_blob_model([](caffe::BlobProto* b) { b->add_data(1.f); });
              load_weights((dir / "m.caffemodel").string(), plan, p);
            }).find("no layer matches the net"),
            std::string::npos);
}

}  // namespace
}  // namespace incept

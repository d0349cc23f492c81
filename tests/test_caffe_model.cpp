// Caffe net files (engine/caffe_model.h): the prototxt DIGITS would write for GoogLeNet and
// LeNet (structure, rules, parse-back), the solver file, NetSpec round trips and clear
// errors for broken prototxt (weights: test_caffe_weights.cpp, OpenCV: test_caffe_opencv.cpp).
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <set>

#include "engine/caffe_model.h"
#include "engine/check.h"
#include "models/models.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using google::protobuf::util::MessageDifferencer;

DataSources sources(bool val = true) {
  DataSources d;
  d.train_db = "/data/fmnist/train_db";
  d.val_db = val ? "/data/fmnist/val_db" : "";
  d.mean_file = "/data/fmnist/mean.binaryproto";
  d.batch_size = 64;
  d.val_batch_size = 32;
  d.channels = 3;
  d.height = d.width = 256;
  return d;
}

NetPlan googlenet_plan(Stage stage, int classes, int batch) {
  PlanOptions o;
  o.stage = stage;
  o.batch = batch;
  o.num_classes = classes;
  return plan_net(models::googlenet(), o);
}

const caffe::LayerParameter* find_layer(const caffe::NetParameter& net, const std::string& name) {
  for (const auto& l : net.layer())
    if (l.name() == name) return &l;
  return nullptr;
}

TEST(CaffePrototxt, EveryFileParsesBackWithTextFormat) {
  const DataSources d = sources();
  for (const NetSpec& spec : {models::googlenet(), models::lenet()}) {
    for (NetFile f : {NetFile::kTrainVal, NetFile::kDeploy, NetFile::kOriginal}) {
      const caffe::NetParameter net = net_parameter(spec, f, 10, &d);
      const std::string text = net_prototxt(net);
      const caffe::NetParameter back = parse_net_prototxt(text, "net");
      EXPECT_TRUE(MessageDifferencer::Equals(net, back)) << spec.name << " file " << int(f);
      // Nothing a Caffe 1.0-era reader (or OpenCV) would reject.
      EXPECT_EQ(text.find("round_mode"), std::string::npos);
      EXPECT_EQ(text.find("\"Input\""), std::string::npos);
    }
  }
}

TEST(CaffePrototxt, DeployIsDigitsDeploy) {
  const DataSources d = sources();
  const caffe::NetParameter net = net_parameter(models::googlenet(), NetFile::kDeploy, 10, &d);
  ASSERT_EQ(net.input_size(), 1);
  EXPECT_EQ(net.input(0), "data");
  ASSERT_EQ(net.input_shape_size(), 1);
  EXPECT_EQ(std::vector<std::int64_t>(net.input_shape(0).dim().begin(), net.input_shape(0).dim().end()),
            (std::vector<std::int64_t>{1, 3, 224, 224}));
  EXPECT_EQ(deploy_input_shape(net), (std::vector<std::int64_t>{1, 3, 224, 224}));
  EXPECT_FALSE(net.has_name());  // DIGITS' generated nets carry no name
  std::set<std::string> types;
  for (const auto& l : net.layer()) {
    types.insert(l.type());
    EXPECT_EQ(l.include_size() + l.exclude_size(), 0) << l.name();
    EXPECT_NE(l.name().rfind("loss1/", 0), 0u) << l.name();
    EXPECT_NE(l.name().rfind("loss2/", 0), 0u) << l.name();
  }
  EXPECT_EQ(types, (std::set<std::string>{"Convolution", "ReLU", "Pooling", "LRN", "Concat", "Dropout",
                                          "InnerProduct", "Softmax"}));
  const auto& last = net.layer(net.layer_size() - 1);
  EXPECT_EQ(last.name(), "softmax");
  EXPECT_EQ(last.type(), "Softmax");
  EXPECT_EQ(last.top(0), "softmax");
  EXPECT_EQ(find_layer(net, "loss3/classifier")->inner_product_param().num_output(), 10u);
  EXPECT_FLOAT_EQ(find_layer(net, "pool5/drop_7x7_s1")->dropout_param().dropout_ratio(), 0.4f);
  EXPECT_EQ(net.layer_size(), int(googlenet_plan(Stage::kDeploy, 10, 1).layers.size()));
  // Without a crop the deploy input is the image size (LeNet: 28x28 grey).
  DataSources gray = sources();
  gray.channels = 1;
  gray.height = gray.width = 28;
  EXPECT_EQ(deploy_input_shape(net_parameter(models::lenet(), NetFile::kDeploy, 10, &gray)),
            (std::vector<std::int64_t>{1, 1, 28, 28}));
}

TEST(CaffePrototxt, TrainValHasDataLayersAndPhaseRules) {
  const DataSources d = sources();
  const caffe::NetParameter net = net_parameter(models::googlenet(), NetFile::kTrainVal, 10, &d);
  ASSERT_GE(net.layer_size(), 2);
  const auto& train = net.layer(0);
  const auto& val = net.layer(1);
  EXPECT_EQ(train.name(), "train-data");
  EXPECT_EQ(train.type(), "Data");
  ASSERT_EQ(train.include_size(), 1);
  EXPECT_EQ(train.include(0).phase(), caffe::TRAIN);
  EXPECT_EQ(train.include(0).stage_size(), 0);
  EXPECT_TRUE(train.transform_param().mirror());
  EXPECT_EQ(train.transform_param().crop_size(), 224u);
  EXPECT_EQ(train.transform_param().mean_file(), d.mean_file);
  EXPECT_EQ(train.data_param().source(), d.train_db);
  EXPECT_EQ(train.data_param().backend(), caffe::DataParameter::LMDB);
  EXPECT_EQ(train.data_param().batch_size(), 64u);
  EXPECT_EQ(val.name(), "val-data");
  EXPECT_EQ(val.include(0).phase(), caffe::TEST);
  EXPECT_TRUE(val.transform_param().has_mirror());
  EXPECT_FALSE(val.transform_param().mirror());
  EXPECT_EQ(val.data_param().source(), d.val_db);
  EXPECT_EQ(val.data_param().batch_size(), 32u);
  int accuracies = 0;
  for (const auto& l : net.layer()) {
    for (const auto& r : l.include()) EXPECT_EQ(r.stage_size(), 0) << l.name();
    EXPECT_EQ(l.exclude_size(), 0) << l.name();
    EXPECT_NE(l.type(), "Softmax") << l.name();  // deploy only
    if (l.type() == "Accuracy") {
      ++accuracies;
      ASSERT_EQ(l.include_size(), 1) << l.name();
      EXPECT_EQ(l.include(0).phase(), caffe::TEST);
    }
    if (l.type() == "SoftmaxWithLoss") {
      EXPECT_EQ(l.include_size(), 0) << l.name();
    }
  }
  EXPECT_EQ(accuracies, 6);
  EXPECT_FLOAT_EQ(find_layer(net, "loss1/loss")->loss_weight(0), 0.3f);
  EXPECT_FLOAT_EQ(find_layer(net, "loss3/loss")->loss_weight(0), 1.f);
  EXPECT_EQ(find_layer(net, "loss3/top-5")->accuracy_param().top_k(), 5u);
  EXPECT_EQ(find_layer(net, "loss1/classifier")->inner_product_param().num_output(), 10u);
  const auto* conv1 = find_layer(net, "conv1/7x7_s2");
  EXPECT_EQ(conv1->param(1).lr_mult(), 2.f);
  EXPECT_EQ(conv1->param(1).decay_mult(), 0.f);
  EXPECT_EQ(conv1->convolution_param().weight_filler().type(), "xavier");
  EXPECT_FLOAT_EQ(conv1->convolution_param().weight_filler().std(), 0.1f);
  EXPECT_FLOAT_EQ(conv1->convolution_param().bias_filler().value(), 0.2f);
  EXPECT_EQ(conv1->convolution_param().stride(0), 2u);
  EXPECT_EQ(conv1->convolution_param().pad(0), 3u);

  // Three classes: the top-5 accuracies go (Caffe would refuse them); no val set: no val-data;
  // mean "pixel": mean_value instead of mean_file.
  DataSources pixel = sources(false);
  pixel.mean_file.clear();
  pixel.mean_value = {104.f, 117.f, 123.f};
  const caffe::NetParameter small = net_parameter(models::googlenet(), NetFile::kTrainVal, 3, &pixel);
  EXPECT_EQ(find_layer(small, "loss3/top-5"), nullptr);
  EXPECT_NE(find_layer(small, "loss3/top-1"), nullptr);
  EXPECT_EQ(find_layer(small, "val-data"), nullptr);
  EXPECT_EQ(small.layer(0).transform_param().mean_value_size(), 3);
  EXPECT_FALSE(small.layer(0).transform_param().has_mean_file());
}

TEST(CaffePrototxt, OriginalKeepsStagesAndUnsetClassifiers) {
  const caffe::NetParameter net = net_parameter(models::googlenet(), NetFile::kOriginal, 10, nullptr);
  EXPECT_EQ(net.name(), "GoogleNet");
  EXPECT_FALSE(find_layer(net, "loss3/classifier")->inner_product_param().has_num_output());
  EXPECT_EQ(find_layer(net, "loss1/conv")->exclude(0).stage(0), "deploy");
  EXPECT_EQ(find_layer(net, "loss1/top-1")->include(0).stage(0), "val");
  EXPECT_EQ(find_layer(net, "softmax")->include(0).stage(0), "deploy");
  EXPECT_EQ(find_layer(net, "train-data")->include(0).stage(0), "train");
  EXPECT_FALSE(find_layer(net, "loss3/classifier")->inner_product_param().weight_filler().has_std());
}

TEST(CaffePrototxt, SolverAsDigitsWritesIt) {
  const SolverSettings s = digits_solver(DigitsSolverForm{}, 1'281'167 * 3 / 4, 1'281'167 / 4, 32, 16);
  SolverFileOptions opt;
  opt.random_seed = 7;
  const std::string text = solver_prototxt(s, opt);
  const caffe::SolverParameter p = parse_solver_prototxt(text, "solver.prototxt");
  EXPECT_NE(text.find("solver_type: SGD"), std::string::npos) << text;
  EXPECT_EQ(p.net(), "train_val.prototxt");
  EXPECT_EQ(p.snapshot_prefix(), "snapshot");
  EXPECT_EQ(p.solver_mode(), caffe::SolverParameter::GPU);
  EXPECT_EQ(p.max_iter(), s.max_iter);
  EXPECT_EQ(p.snapshot(), s.snapshot);
  EXPECT_EQ(p.test_interval(), s.test_interval);
  ASSERT_EQ(p.test_iter_size(), 1);
  EXPECT_EQ(p.test_iter(0), s.test_iter);
  EXPECT_EQ(p.lr_policy(), "step");
  EXPECT_EQ(p.stepsize(), s.lr.stepsize);
  EXPECT_FLOAT_EQ(p.gamma(), 0.1f);
  EXPECT_FLOAT_EQ(p.base_lr(), 0.01f);
  EXPECT_FLOAT_EQ(p.momentum(), 0.9f);
  EXPECT_FLOAT_EQ(p.weight_decay(), 1e-4f);
  EXPECT_EQ(p.display(), s.display);
  EXPECT_EQ(p.random_seed(), 7);
  EXPECT_FALSE(p.has_iter_size());
  EXPECT_FALSE(p.has_power());
  EXPECT_FALSE(p.has_store_blobs_in_old_format());
}

TEST(CaffePrototxt, NetSpecRoundTrips) {
  const DataSources d = sources();
  for (const NetSpec& spec : {models::googlenet(), models::lenet()}) {
    const caffe::NetParameter original = net_parameter(spec, NetFile::kOriginal, 10, &d);
    const NetSpec back = net_spec_from_prototxt(parse_net_prototxt(net_prototxt(original), "original"));
    EXPECT_TRUE(MessageDifferencer::Equals(original, net_parameter(back, NetFile::kOriginal, 10, &d)))
        << spec.name;
    ASSERT_EQ(back.layers.size(), spec.layers.size());
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      EXPECT_EQ(back.layers[i].name, spec.layers[i].name);
      EXPECT_EQ(back.layers[i].include, spec.layers[i].include) << spec.layers[i].name;
      EXPECT_EQ(back.layers[i].exclude, spec.layers[i].exclude) << spec.layers[i].name;
      EXPECT_EQ(back.layers[i].kind(), spec.layers[i].kind());
    }
    // train_val and deploy (phase rules, no stages) plan to the same nets as the spec.
    const NetSpec tv = net_spec_from_prototxt(net_parameter(spec, NetFile::kTrainVal, 10, &d));
    const NetSpec dep = net_spec_from_prototxt(net_parameter(spec, NetFile::kDeploy, 10, &d));
    for (Stage stage : {Stage::kTrain, Stage::kVal, Stage::kDeploy}) {
      PlanOptions o;
      o.stage = stage;
      o.num_classes = 10;
      o.batch = 2;
      o.channels = spec.name == "LeNet" ? 1 : 3;
      o.height = o.width = spec.name == "LeNet" ? 28 : 224;
      const NetPlan want = plan_net(spec, o);
      const NetPlan got = plan_net(stage == Stage::kDeploy ? dep : tv, o);
      ASSERT_EQ(got.layers.size(), want.layers.size()) << spec.name << " " << stage_name(stage);
      ASSERT_EQ(got.params.size(), want.params.size());
      for (std::size_t i = 0; i < want.params.size(); ++i) {
        EXPECT_EQ(got.params[i].layer, want.params[i].layer);
        EXPECT_EQ(got.params[i].shape, want.params[i].shape);
        EXPECT_EQ(got.params[i].offset, want.params[i].offset);
        EXPECT_EQ(got.params[i].lr_mult, want.params[i].lr_mult);
      }
    }
  }
}

TEST(CaffePrototxt, ClearErrors) {
  EXPECT_NE(testing::error_of([] {
              parse_net_prototxt("layer { name: \"a\"\n  bogus: 3 }", "x.prototxt");
            }).find("x.prototxt: not a valid Caffe net prototxt (line 2"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_prototxt("/nonexistent/deploy.prototxt"); }).find("cannot open"),
            std::string::npos);
  const std::string unsupported = testing::error_of(
      [] { net_spec_from_prototxt(parse_net_prototxt("layer { name: \"bn\" type: \"BatchNorm\" }", "x")); });
  EXPECT_NE(unsupported.find("layer bn: type BatchNorm is not supported"), std::string::npos) << unsupported;
  const std::string grouped = testing::error_of([] {
    net_spec_from_prototxt(
        parse_net_prototxt("layer { name: \"c\" type: \"Convolution\" convolution_param { num_output: 4 "
                           "kernel_size: 3 group: 2 } }",
                           "x"));
  });
  EXPECT_NE(grouped.find("layer c (Convolution): a grouped convolution"), std::string::npos) << grouped;
  EXPECT_NE(testing::error_of([] { deploy_input_shape(caffe::NetParameter()); }).find("no 4-D input shape"),
            std::string::npos);
}

}  // namespace
}  // namespace incept

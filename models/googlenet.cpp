// DIGITS' standard GoogLeNet as a NetSpec (models.h). Layer and blob names, fillers and stage
// rules as in NVIDIA/DIGITS digits/standard-networks/caffe/googlenet.prototxt; the `std` of
// each xavier filler is kept only so the export writes it back (Caffe ignores it).
#include "models/models.h"
#include "models/spec_builder.h"

namespace incept::models {
namespace {

constexpr StageMask kNoDeploy = stage_bit(Stage::kDeploy);

struct Inception {
  const char* name;
  int c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj;
};

// Returns the module's output blob.
std::string add_inception(NetSpec& net, const std::string& bottom, const Inception& m) {
  const std::string s = std::string(m.name) + "/";
  add_conv(net, s + "1x1", bottom, m.c1x1, 1, 1, 0, xavier(0.03f), 0.2f, s + "relu_1x1");
  add_conv(net, s + "3x3_reduce", bottom, m.c3x3_reduce, 1, 1, 0, xavier(0.09f), 0.2f, s + "relu_3x3_reduce");
  add_conv(net, s + "3x3", s + "3x3_reduce", m.c3x3, 3, 1, 1, xavier(0.03f), 0.2f, s + "relu_3x3");
  add_conv(net, s + "5x5_reduce", bottom, m.c5x5_reduce, 1, 1, 0, xavier(0.2f), 0.2f, s + "relu_5x5_reduce");
  add_conv(net, s + "5x5", s + "5x5_reduce", m.c5x5, 5, 1, 2, xavier(0.03f), 0.2f, s + "relu_5x5");
  add_pool(net, s + "pool", bottom, PoolMethod::kMax, 3, 1, 1);
  add_conv(net, s + "pool_proj", s + "pool", m.pool_proj, 1, 1, 0, xavier(0.1f), 0.2f, s + "relu_pool_proj");
  LayerSpec concat;
  concat.name = s + "output";
  concat.params = ConcatParams{};
  concat.bottoms = {s + "1x1", s + "3x3", s + "5x5", s + "pool_proj"};
  concat.tops = {s + "output"};
  net.layers.push_back(std::move(concat));
  return s + "output";
}

// Auxiliary classifier lossN on `bottom` (loss weight 0.3, dropout 0.7).
void add_aux_head(NetSpec& net, const std::string& n, const std::string& bottom) {
  add_pool(net, n + "/ave_pool", bottom, PoolMethod::kAve, 5, 3, 0, kNoDeploy);
  add_conv(net, n + "/conv", n + "/ave_pool", 128, 1, 1, 0, xavier(0.08f), 0.2f, n + "/relu_conv", kNoDeploy);
  add_fc(net, n + "/fc", n + "/conv", 1024, xavier(0.02f), 0.2f, kNoDeploy);
  add_relu(net, n + "/relu_fc", n + "/fc", kNoDeploy);
  add_dropout(net, n + "/drop_fc", n + "/fc", 0.7f, kNoDeploy);
  add_fc(net, n + "/classifier", n + "/fc", 0, xavier(0.0009765625f), 0.f, kNoDeploy);
  add_loss(net, n + "/loss", n + "/classifier", n + "/loss", 0.3f);
  add_accuracy(net, n + "/top-1", n + "/classifier", n + "/accuracy", 1);
  add_accuracy(net, n + "/top-5", n + "/classifier", n + "/accuracy-top5", 5);
}

}  // namespace

NetSpec googlenet() {
  NetSpec net;
  net.name = "GoogleNet";
  net.data_layers = {{"train-data", Stage::kTrain, 224, true, 32, 1.f},
                     {"val-data", Stage::kVal, 224, false, 16, 1.f}};
  add_conv(net, "conv1/7x7_s2", "data", 64, 7, 2, 3, xavier(0.1f), 0.2f, "conv1/relu_7x7");
  add_pool(net, "pool1/3x3_s2", "conv1/7x7_s2", PoolMethod::kMax, 3, 2);
  add_lrn(net, "pool1/norm1", "pool1/3x3_s2");
  add_conv(net, "conv2/3x3_reduce", "pool1/norm1", 64, 1, 1, 0, xavier(0.1f), 0.2f, "conv2/relu_3x3_reduce");
  add_conv(net, "conv2/3x3", "conv2/3x3_reduce", 192, 3, 1, 1, xavier(0.03f), 0.2f, "conv2/relu_3x3");
  add_lrn(net, "conv2/norm2", "conv2/3x3");
  add_pool(net, "pool2/3x3_s2", "conv2/norm2", PoolMethod::kMax, 3, 2);

  std::string x = add_inception(net, "pool2/3x3_s2", {"inception_3a", 64, 96, 128, 16, 32, 32});
  x = add_inception(net, x, {"inception_3b", 128, 128, 192, 32, 96, 64});
  add_pool(net, "pool3/3x3_s2", x, PoolMethod::kMax, 3, 2);
  x = add_inception(net, "pool3/3x3_s2", {"inception_4a", 192, 96, 208, 16, 48, 64});
  add_aux_head(net, "loss1", x);
  x = add_inception(net, x, {"inception_4b", 160, 112, 224, 24, 64, 64});
  x = add_inception(net, x, {"inception_4c", 128, 128, 256, 24, 64, 64});
  x = add_inception(net, x, {"inception_4d", 112, 144, 288, 32, 64, 64});
  add_aux_head(net, "loss2", x);
  x = add_inception(net, x, {"inception_4e", 256, 160, 320, 32, 128, 128});
  add_pool(net, "pool4/3x3_s2", x, PoolMethod::kMax, 3, 2);
  x = add_inception(net, "pool4/3x3_s2", {"inception_5a", 256, 160, 320, 32, 128, 128});
  x = add_inception(net, x, {"inception_5b", 384, 192, 384, 48, 128, 128});

  add_pool(net, "pool5/7x7_s1", x, PoolMethod::kAve, 7, 1);
  add_dropout(net, "pool5/drop_7x7_s1", "pool5/7x7_s1", 0.4f);
  add_fc(net, "loss3/classifier", "pool5/7x7_s1", 0, xavier(), 0.f);
  add_loss(net, "loss3/loss", "loss3/classifier", "loss", 1.f);
  add_accuracy(net, "loss3/top-1", "loss3/classifier", "accuracy", 1);
  add_accuracy(net, "loss3/top-5", "loss3/classifier", "accuracy-top5", 5);
  LayerSpec softmax;
  softmax.name = "softmax";
  softmax.params = SoftmaxParams{};
  softmax.bottoms = {"loss3/classifier"};
  softmax.tops = {"softmax"};
  softmax.include = stage_bit(Stage::kDeploy);
  net.layers.push_back(std::move(softmax));
  return net;
}

}  // namespace incept::models

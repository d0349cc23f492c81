// DIGITS' LeNet (digits/standard-networks/caffe/lenet.prototxt) as a NetSpec: the small net
// for 28x28 grey images (MNIST, Fashion-MNIST) that trains in seconds on the CPU.
#include "models/models.h"
#include "models/spec_builder.h"

namespace incept::models {

NetSpec lenet() {
  NetSpec net;
  net.name = "LeNet";
  net.data_layers = {{"train-data", Stage::kTrain, 0, false, 64, 0.0125f},
                     {"val-data", Stage::kVal, 0, false, 32, 0.0125f}};
  auto lr_1_2 = [](NetSpec& n) {  // LeNet's params: lr_mult 1 / 2, decay_mult default 1
    n.layers.back().param_specs[1].decay_mult = 1.f;
  };
  add_conv(net, "conv1", "data", 20, 5, 1, 0, xavier(), 0.f, "");
  lr_1_2(net);
  add_pool(net, "pool1", "conv1", PoolMethod::kMax, 2, 2);
  add_conv(net, "conv2", "pool1", 50, 5, 1, 0, xavier(), 0.f, "");
  lr_1_2(net);
  add_pool(net, "pool2", "conv2", PoolMethod::kMax, 2, 2);
  add_fc(net, "ip1", "pool2", 500, xavier(), 0.f);
  lr_1_2(net);
  add_relu(net, "relu1", "ip1");
  add_fc(net, "ip2", "ip1", 0, xavier(), 0.f);
  lr_1_2(net);
  add_accuracy(net, "accuracy", "ip2", "accuracy", 1);
  add_loss(net, "loss", "ip2", "loss", 1.f);
  LayerSpec softmax;
  softmax.name = "softmax";
  softmax.params = SoftmaxParams{};
  softmax.bottoms = {"ip2"};
  softmax.tops = {"softmax"};
  softmax.include = stage_bit(Stage::kDeploy);
  net.layers.push_back(std::move(softmax));
  return net;
}

}  // namespace incept::models

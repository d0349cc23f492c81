// Layer-spec helpers for the model files (spec_builder.h).
#include "models/spec_builder.h"

namespace incept::models {

FillerSpec xavier(float std) {
  return {FillerKind::kXavier, 0.f, std};
}
FillerSpec constant(float value) {
  return {FillerKind::kConstant, value, 0.f};
}

namespace {

LayerSpec& add(NetSpec& net, const std::string& name, LayerParams params, const std::string& bottom,
               const std::string& top, StageMask exclude) {
  LayerSpec l;
  l.name = name;
  l.params = std::move(params);
  l.bottoms = {bottom};
  l.tops = {top};
  l.exclude = exclude;
  net.layers.push_back(std::move(l));
  return net.layers.back();
}

std::vector<ParamSpec> weight_and_bias(FillerSpec weight, float bias_value) {
  return {ParamSpec{1.f, 1.f, weight}, ParamSpec{2.f, 0.f, constant(bias_value)}};
}

}  // namespace

void add_conv(NetSpec& net, const std::string& name, const std::string& bottom, int num_output, int kernel,
              int stride, int pad, FillerSpec weight, float bias_value, const std::string& relu_name,
              StageMask exclude) {
  ConvGeom g{num_output, kernel, kernel, stride, stride, pad, pad, true};
  add(net, name, ConvParams{g}, bottom, name, exclude).param_specs = weight_and_bias(weight, bias_value);
  if (!relu_name.empty()) add_relu(net, relu_name, name, exclude);
}

void add_fc(NetSpec& net, const std::string& name, const std::string& bottom, int num_output,
            FillerSpec weight, float bias_value, StageMask exclude) {
  add(net, name, FcParams{FcGeom{num_output, true}}, bottom, name, exclude).param_specs =
      weight_and_bias(weight, bias_value);
}

void add_pool(NetSpec& net, const std::string& name, const std::string& bottom, PoolMethod method, int kernel,
              int stride, int pad, StageMask exclude) {
  PoolGeom g{method, kernel, kernel, stride, stride, pad, pad, false};
  add(net, name, PoolParams{g}, bottom, name, exclude);
}

void add_relu(NetSpec& net, const std::string& name, const std::string& blob, StageMask exclude) {
  add(net, name, ReluParams{}, blob, blob, exclude);
}

void add_dropout(NetSpec& net, const std::string& name, const std::string& blob, float ratio,
                 StageMask exclude) {
  add(net, name, DropoutParams{ratio}, blob, blob, exclude);
}

void add_lrn(NetSpec& net, const std::string& name, const std::string& bottom) {
  add(net, name, LrnParams{LrnGeom{5, 1e-4f, 0.75f, 1.f}}, bottom, name, 0);
}

void add_loss(NetSpec& net, const std::string& name, const std::string& scores, const std::string& top,
              float loss_weight) {
  LayerSpec& l = add(net, name, SoftmaxLossParams{loss_weight}, scores, top, stage_bit(Stage::kDeploy));
  l.bottoms.push_back(net.label_top);
}

void add_accuracy(NetSpec& net, const std::string& name, const std::string& scores, const std::string& top,
                  int top_k) {
  LayerSpec& l = add(net, name, AccuracyParams{top_k}, scores, top, 0);
  l.bottoms.push_back(net.label_top);
  l.include = stage_bit(Stage::kVal);
}

}  // namespace incept::models

// caffe.NetParameter -> NetSpec (caffe_model.h): Caffe's layer messages of the types incept
// runs, with their rules turned into stage masks, so a deploy.prototxt from an archive (ours,
// DIGITS' or BVLC's model zoo) can be planned and run. Anything incept would compute
// differently from Caffe is refused with the layer's name rather than approximated.
#include <fmt/format.h>

#include <algorithm>

#include "engine/caffe_model.h"
#include "engine/check.h"

namespace incept {
namespace {

using caffe::LayerParameter;

[[noreturn]] void unsupported(const LayerParameter& l, const std::string& what) {
  throw Error(fmt::format("layer {} ({}): {} is not supported by incept", l.name(), l.type(), what));
}

// The bit of a stage name (0 for a stage incept never runs).
StageMask stage_mask_of(const std::string& s) {
  for (Stage st : {Stage::kTrain, Stage::kVal, Stage::kDeploy})
    if (s == stage_name(st)) return stage_bit(st);
  return 0;
}

// The stages (train = phase TRAIN + "train", val = TEST + "val", deploy = TEST + "deploy", the
// NetStates DIGITS uses) that meet one rule, as Caffe's StateMeetsRule decides (level 0).
StageMask rule_mask(const caffe::NetStateRule& r) {
  StageMask m = kAllStages;
  const StageMask test = stage_bit(Stage::kVal) | stage_bit(Stage::kDeploy);
  if (r.has_phase()) m &= r.phase() == caffe::TRAIN ? stage_bit(Stage::kTrain) : test;
  if (r.has_min_level() && r.min_level() > 0) m = 0;
  if (r.has_max_level() && r.max_level() < 0) m = 0;
  for (const std::string& s : r.stage()) m &= stage_mask_of(s);
  for (const std::string& s : r.not_stage()) m &= StageMask(~stage_mask_of(s) & kAllStages);
  return m;
}

void set_rules(const LayerParameter& l, StageMask* include, StageMask* exclude) {
  *include = kAllStages;
  *exclude = 0;
  if (l.include_size() > 0) {
    *include = 0;
    for (const auto& r : l.include()) *include |= rule_mask(r);
  }
  for (const auto& r : l.exclude()) *exclude |= rule_mask(r);
}

FillerSpec filler(const LayerParameter& l, const caffe::FillerParameter& f) {
  if (f.type() == "constant") return {FillerKind::kConstant, f.value(), 0.f};
  if (f.type() == "xavier") {
    if (f.variance_norm() != caffe::FillerParameter::FAN_IN)
      unsupported(l, "a xavier filler with variance_norm");
    return {FillerKind::kXavier, 0.f, f.has_std() ? f.std() : 0.f};
  }
  if (f.type() == "gaussian") {
    if (f.mean() != 0.f || f.sparse() >= 0) unsupported(l, "a gaussian filler with mean or sparse");
    return {FillerKind::kGaussian, 0.f, f.std()};
  }
  unsupported(l, fmt::format("the '{}' filler", f.type()));
}

std::vector<ParamSpec> param_specs(const LayerParameter& l, bool bias, const caffe::FillerParameter& weight,
                                   const caffe::FillerParameter& bias_filler) {
  std::vector<ParamSpec> out(bias ? 2 : 1);
  for (int i = 0; i < int(out.size()) && i < l.param_size(); ++i) {
    out[i].lr_mult = l.param(i).lr_mult();
    out[i].decay_mult = l.param(i).decay_mult();
  }
  out[0].filler = filler(l, weight);
  if (bias) out[1].filler = filler(l, bias_filler);
  return out;
}

// kernel/pad/stride of a convolution: the repeated square form (1 or 2 values) or _h/_w.
void conv_dims(const LayerParameter& l, const google::protobuf::RepeatedField<std::uint32_t>& v, bool has_h,
               std::uint32_t h, std::uint32_t w, int dflt, const char* what, int* out_h, int* out_w) {
  if (has_h) {
    *out_h = int(h), *out_w = int(w);
  } else if (v.empty()) {
    *out_h = *out_w = dflt;
  } else if (v.size() <= 2) {
    *out_h = int(v.Get(0)), *out_w = int(v.Get(v.size() - 1));
  } else {
    unsupported(l, fmt::format("a {}-D {}", v.size(), what));
  }
}

LayerParams conv_params(const LayerParameter& l, std::vector<ParamSpec>* specs) {
  const caffe::ConvolutionParameter& c = l.convolution_param();
  if (c.group() != 1) unsupported(l, "a grouped convolution");
  for (std::uint32_t d : c.dilation())
    if (d != 1) unsupported(l, "a dilated convolution");
  if (c.axis() != 1) unsupported(l, "a convolution axis other than 1");
  if (!c.has_num_output() || c.num_output() == 0)
    throw Error(fmt::format("layer {}: num_output unset", l.name()));
  ConvGeom g;
  g.num_output = int(c.num_output());
  g.bias = c.bias_term();
  conv_dims(l, c.kernel_size(), c.has_kernel_h(), c.kernel_h(), c.kernel_w(), 0, "kernel", &g.kernel_h,
            &g.kernel_w);
  conv_dims(l, c.pad(), c.has_pad_h() || c.has_pad_w(), c.pad_h(), c.pad_w(), 0, "pad", &g.pad_h, &g.pad_w);
  conv_dims(l, c.stride(), c.has_stride_h(), c.stride_h(), c.stride_w(), 1, "stride", &g.stride_h,
            &g.stride_w);
  if (g.kernel_h <= 0 || g.kernel_w <= 0 || g.stride_h <= 0 || g.stride_w <= 0)
    throw Error(fmt::format("layer {}: kernel and stride must be positive", l.name()));
  *specs = param_specs(l, g.bias, c.weight_filler(), c.bias_filler());
  return ConvParams{g};
}

LayerParams pool_params(const LayerParameter& l) {
  const caffe::PoolingParameter& p = l.pooling_param();
  if (p.pool() == caffe::PoolingParameter::STOCHASTIC) unsupported(l, "stochastic pooling");
  if (p.torch_pooling()) unsupported(l, "floor rounding (torch_pooling)");
  PoolGeom g;
  g.method = p.pool() == caffe::PoolingParameter::MAX ? PoolMethod::kMax : PoolMethod::kAve;
  g.global = p.global_pooling();
  if (!g.global) {
    g.kernel_h = int(p.has_kernel_h() ? p.kernel_h() : p.kernel_size());
    g.kernel_w = int(p.has_kernel_w() ? p.kernel_w() : p.kernel_size());
    if (g.kernel_h <= 0 || g.kernel_w <= 0)
      throw Error(fmt::format("layer {}: pooling kernel unset", l.name()));
  }
  g.stride_h = int(p.has_stride_h() ? p.stride_h() : p.stride());
  g.stride_w = int(p.has_stride_w() ? p.stride_w() : p.stride());
  g.pad_h = int(p.has_pad_h() ? p.pad_h() : p.pad());
  g.pad_w = int(p.has_pad_w() ? p.pad_w() : p.pad());
  if (g.stride_h <= 0 || g.stride_w <= 0)
    throw Error(fmt::format("layer {}: pooling stride must be positive", l.name()));
  return PoolParams{g};
}

LayerParams layer_params(const LayerParameter& l, std::vector<ParamSpec>* specs) {
  const std::string& t = l.type();
  if (t == "Convolution") return conv_params(l, specs);
  if (t == "ReLU") {
    if (l.relu_param().negative_slope() != 0.f) unsupported(l, "a leaky ReLU (negative_slope)");
    return ReluParams{};
  }
  if (t == "Pooling") return pool_params(l);
  if (t == "LRN") {
    const caffe::LRNParameter& r = l.lrn_param();
    if (r.norm_region() != caffe::LRNParameter::ACROSS_CHANNELS) unsupported(l, "WITHIN_CHANNEL LRN");
    if (r.local_size() % 2 == 0) throw Error(fmt::format("layer {}: LRN local_size must be odd", l.name()));
    return LrnParams{LrnGeom{int(r.local_size()), r.alpha(), r.beta(), r.k()}};
  }
  if (t == "Concat") {
    const caffe::ConcatParameter& c = l.concat_param();
    if ((c.has_axis() && c.axis() != 1) || (c.has_concat_dim() && c.concat_dim() != 1))
      unsupported(l, "a concatenation along an axis other than channels");
    return ConcatParams{};
  }
  if (t == "InnerProduct") {
    const caffe::InnerProductParameter& ip = l.inner_product_param();
    if (ip.axis() != 1) unsupported(l, "an inner product axis other than 1");
    if (ip.transpose()) unsupported(l, "transposed inner product weights");
    FcGeom g{int(ip.num_output()), ip.bias_term()};
    *specs = param_specs(l, g.bias, ip.weight_filler(), ip.bias_filler());
    return FcParams{g};
  }
  if (t == "Dropout") return DropoutParams{l.dropout_param().dropout_ratio()};
  if (t == "SoftmaxWithLoss") {
    if (l.loss_param().has_ignore_label()) unsupported(l, "ignore_label");
    if (l.loss_param().has_normalization() && l.loss_param().normalization() != caffe::LossParameter::VALID)
      unsupported(l, "a loss normalization other than VALID");
    return SoftmaxLossParams{l.loss_weight_size() > 0 ? l.loss_weight(0) : 1.f};
  }
  if (t == "Accuracy") {
    if (l.accuracy_param().axis() != 1 || l.accuracy_param().has_ignore_label())
      unsupported(l, "an accuracy axis or ignore_label");
    return AccuracyParams{int(l.accuracy_param().top_k())};
  }
  if (t == "Softmax") {
    if (l.softmax_param().axis() != 1) unsupported(l, "a softmax axis other than 1");
    return SoftmaxParams{};
  }
  std::string known;
  for (int k = 0; k < kNumLayerKinds; ++k) known += std::string(k ? ", " : "") + kind_name(LayerKind(k));
  throw Error(fmt::format("layer {}: type {} is not supported by incept (supported: Data, Input, {})",
                          l.name(), t, known));
}

// A Data layer as the DataLayerSpec of the stage(s) it runs in.
void add_data_layer(const LayerParameter& l, StageMask include, StageMask exclude, NetSpec& spec) {
  if (l.top_size() > 0) spec.data_top = l.top(0);
  if (l.top_size() > 1) spec.label_top = l.top(1);
  for (Stage s : {Stage::kTrain, Stage::kVal}) {
    if (!(include & stage_bit(s)) || (exclude & stage_bit(s)) || spec.data_layer(s)) continue;
    DataLayerSpec d;
    d.name = l.name();
    d.stage = s;
    d.crop_size = int(l.transform_param().crop_size());
    d.mirror = l.transform_param().mirror();
    d.batch_size = int(l.data_param().batch_size());
    d.scale = l.transform_param().scale();
    spec.data_layers.push_back(d);
  }
}

}  // namespace

NetSpec net_spec_from_prototxt(const caffe::NetParameter& net) {
  if (net.layers_size() > 0)
    throw Error("the net uses Caffe's V1 `layers` format; upgrade it with Caffe's upgrade_net_proto_text");
  NetSpec spec;
  spec.name = net.name();
  if (net.input_size() > 0) spec.data_top = net.input(0);
  for (const LayerParameter& l : net.layer()) {
    StageMask include, exclude;
    set_rules(l, &include, &exclude);
    if (l.type() == "Data") {
      add_data_layer(l, include, exclude, spec);
      continue;
    }
    if (l.type() == "Input") {
      if (l.top_size() != 1)
        throw Error(fmt::format("layer {}: an Input layer with {} tops", l.name(), l.top_size()));
      spec.data_top = l.top(0);
      continue;
    }
    LayerSpec ls;
    ls.name = l.name();
    ls.params = layer_params(l, &ls.param_specs);
    ls.bottoms.assign(l.bottom().begin(), l.bottom().end());
    ls.tops.assign(l.top().begin(), l.top().end());
    ls.include = include;
    ls.exclude = exclude;
    spec.layers.push_back(std::move(ls));
  }
  return spec;
}

std::vector<std::int64_t> deploy_input_shape(const caffe::NetParameter& net) {
  std::vector<std::int64_t> shape;
  if (net.input_shape_size() > 0) {
    shape.assign(net.input_shape(0).dim().begin(), net.input_shape(0).dim().end());
  } else if (net.input_dim_size() >= 4) {
    shape.assign(net.input_dim().begin(), net.input_dim().begin() + 4);
  } else {
    for (const LayerParameter& l : net.layer())
      if (l.type() == "Input" && l.input_param().shape_size() > 0) {
        shape.assign(l.input_param().shape(0).dim().begin(), l.input_param().shape(0).dim().end());
        break;
      }
  }
  if (shape.size() != 4 || std::any_of(shape.begin(), shape.end(), [](std::int64_t d) { return d <= 0; }))
    throw Error(
        fmt::format("net {}: no 4-D input shape (input_shape, input_dim or an Input layer) in the deploy "
                    "prototxt",
                    net.name()));
  return shape;
}

}  // namespace incept

// NetSpec -> caffe.NetParameter (train_val, deploy, original) and SolverSettings ->
// caffe.SolverParameter as DIGITS' caffe_train.py writes them, and the text-format I/O
// (caffe_model.h). Weights are in caffe_weights.cpp, prototxt -> NetSpec in caffe_model_import.cpp.
#include "engine/caffe_model.h"

#include <fmt/format.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "engine/check.h"

namespace incept {
namespace {

using caffe::LayerParameter;
using caffe::NetParameter;

void set_filler(const FillerSpec& f, caffe::FillerParameter* out) {
  switch (f.kind) {
    case FillerKind::kConstant:
      out->set_type("constant");
      out->set_value(f.value);
      break;
    case FillerKind::kXavier:
      out->set_type("xavier");
      if (f.std != 0.f) out->set_std(f.std);  // written back as DIGITS has it; Caffe ignores it
      break;
    case FillerKind::kGaussian:
      out->set_type("gaussian");
      out->set_std(f.std);
      break;
  }
}

// Caffe's convolution geometry fields: the square forms where they suffice (as prototxt
// authors write them), the _h/_w forms otherwise. Defaults (pad 0, stride 1) are left out.
void set_conv_geom(const ConvGeom& g, caffe::ConvolutionParameter* c) {
  if (g.pad_h == g.pad_w) {
    if (g.pad_h != 0) c->add_pad(std::uint32_t(g.pad_h));
  } else {
    c->set_pad_h(std::uint32_t(g.pad_h));
    c->set_pad_w(std::uint32_t(g.pad_w));
  }
  if (g.kernel_h == g.kernel_w) {
    c->add_kernel_size(std::uint32_t(g.kernel_h));
  } else {
    c->set_kernel_h(std::uint32_t(g.kernel_h));
    c->set_kernel_w(std::uint32_t(g.kernel_w));
  }
  if (g.stride_h == g.stride_w) {
    if (g.stride_h != 1) c->add_stride(std::uint32_t(g.stride_h));
  } else {
    c->set_stride_h(std::uint32_t(g.stride_h));
    c->set_stride_w(std::uint32_t(g.stride_w));
  }
}

void set_pool_geom(const PoolGeom& g, caffe::PoolingParameter* p) {
  p->set_pool(g.method == PoolMethod::kMax ? caffe::PoolingParameter::MAX : caffe::PoolingParameter::AVE);
  if (g.global) {
    p->set_global_pooling(true);
    return;
  }
  if (g.kernel_h == g.kernel_w) {
    p->set_kernel_size(std::uint32_t(g.kernel_h));
  } else {
    p->set_kernel_h(std::uint32_t(g.kernel_h));
    p->set_kernel_w(std::uint32_t(g.kernel_w));
  }
  if (g.stride_h == g.stride_w) {
    p->set_stride(std::uint32_t(g.stride_h));  // DIGITS' networks spell out every pooling stride
  } else {
    p->set_stride_h(std::uint32_t(g.stride_h));
    p->set_stride_w(std::uint32_t(g.stride_w));
  }
  if (g.pad_h == g.pad_w) {
    if (g.pad_h != 0) p->set_pad(std::uint32_t(g.pad_h));
  } else {
    p->set_pad_h(std::uint32_t(g.pad_h));
    p->set_pad_w(std::uint32_t(g.pad_w));
  }
}

// param { lr_mult decay_mult } and the fillers of a layer with weights (+ bias).
template <typename P>
void set_params_and_fillers(const LayerSpec& l, bool bias, LayerParameter* out, P* p) {
  for (const ParamSpec& ps : l.param_specs) {
    caffe::ParamSpec* s = out->add_param();
    s->set_lr_mult(ps.lr_mult);
    s->set_decay_mult(ps.decay_mult);
  }
  if (!l.param_specs.empty()) set_filler(l.param_specs[0].filler, p->mutable_weight_filler());
  if (bias && l.param_specs.size() > 1) set_filler(l.param_specs[1].filler, p->mutable_bias_filler());
}

void add_stage_rules(StageMask mask, google::protobuf::RepeatedPtrField<caffe::NetStateRule>* rules) {
  for (Stage s : {Stage::kTrain, Stage::kVal, Stage::kDeploy})
    if (mask & stage_bit(s)) rules->Add()->add_stage(stage_name(s));
}

// The stage rules of a layer as DIGITS' filterLayersByState turns them into train_val rules:
// none when the layer runs in both train and val, else `include { phase: TRAIN | TEST }`.
void set_train_val_rule(bool in_train, bool in_val, LayerParameter* out) {
  out->clear_include();
  out->clear_exclude();
  if (in_train && !in_val) out->add_include()->set_phase(caffe::TRAIN);
  if (in_val && !in_train) out->add_include()->set_phase(caffe::TEST);
}

LayerParameter data_layer_parameter(const NetSpec& spec, const DataLayerSpec& d) {
  LayerParameter out;
  out.set_name(d.name);
  out.set_type("Data");
  out.add_top(spec.data_top);
  out.add_top(spec.label_top);
  caffe::TransformationParameter* t = out.mutable_transform_param();
  t->set_mirror(d.mirror);
  if (d.crop_size > 0) t->set_crop_size(std::uint32_t(d.crop_size));
  if (d.scale != 1.f) t->set_scale(d.scale);
  out.mutable_data_param()->set_batch_size(std::uint32_t(d.batch_size));
  out.add_include()->add_stage(stage_name(d.stage));
  return out;
}

// The crop DIGITS writes: the form's crop, else the network's, clamped to the image.
int effective_crop(const NetSpec& spec, const DataSources* data) {
  if (data && data->crop_size > 0) return data->crop_size;
  const DataLayerSpec* d = spec.data_layer(Stage::kTrain);
  int crop = d ? d->crop_size : 0;
  if (crop > 0 && data && data->height > 0 && data->width > 0)
    crop = std::min({crop, data->height, data->width});
  return crop;
}

void add_train_val_data_layers(const NetSpec& spec, const DataSources* data, NetParameter& net) {
  const int crop = effective_crop(spec, data);
  for (Stage stage : {Stage::kTrain, Stage::kVal}) {
    const DataLayerSpec* d = spec.data_layer(stage);
    if (!d) continue;
    if (stage == Stage::kVal && data && data->val_db.empty()) continue;  // no validation set
    LayerParameter* l = net.add_layer();
    *l = data_layer_parameter(spec, *d);
    set_train_val_rule(stage == Stage::kTrain, stage == Stage::kVal, l);
    if (crop > 0) l->mutable_transform_param()->set_crop_size(std::uint32_t(crop));
    if (!data) continue;
    caffe::DataParameter* dp = l->mutable_data_param();
    dp->set_source(stage == Stage::kTrain ? data->train_db : data->val_db);
    dp->set_backend(caffe::DataParameter::LMDB);
    const int batch = stage == Stage::kTrain ? data->batch_size : data->val_batch_size;
    if (batch > 0) dp->set_batch_size(std::uint32_t(batch));
    caffe::TransformationParameter* t = l->mutable_transform_param();
    if (!data->mean_value.empty()) {
      for (float v : data->mean_value) t->add_mean_value(v);
    } else if (!data->mean_file.empty()) {
      t->set_mean_file(data->mean_file);
    }
  }
}

// DIGITS' cleanedUpClassificationNetwork: classifiers get the class count; Accuracy layers
// asking for more classes than there are go away (Caffe would refuse them).
bool keep_after_cleanup(const LayerSpec& l, int num_classes) {
  if (const auto* a = std::get_if<AccuracyParams>(&l.params))
    return num_classes <= 0 || a->top_k <= num_classes;
  return true;
}

LayerParameter cleaned_layer(const LayerSpec& l, int num_classes) {
  LayerParameter out = layer_parameter(l);
  if (l.kind() == LayerKind::kInnerProduct && !out.inner_product_param().has_num_output()) {
    if (num_classes <= 0)
      throw Error(fmt::format("layer {}: classifier size unset; give the class count", l.name));
    out.mutable_inner_product_param()->set_num_output(std::uint32_t(num_classes));
  }
  return out;
}

// google::protobuf's parse errors as one message.
class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (text.empty()) text = fmt::format("line {}, column {}: {}", line + 1, column + 1, message);
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  std::string text;
};

template <typename M>
M parse_text(std::string_view text, const std::string& what, const char* kind) {
  M msg;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &msg))
    throw Error(fmt::format("{}: not a valid Caffe {} ({})", what, kind,
                            errors.text.empty() ? "parse error" : errors.text));
  return msg;
}

}  // namespace

BlobFormat parse_blob_format(std::string_view name) {
  if (name == "compatible") return BlobFormat::kCompatible;
  if (name == "modern") return BlobFormat::kModern;
  throw Error(fmt::format("unknown blob format '{}' (use compatible or modern)", name));
}

const char* blob_format_name(BlobFormat f) {
  return f == BlobFormat::kCompatible ? "compatible" : "modern";
}

LayerParameter layer_parameter(const LayerSpec& l) {
  LayerParameter out;
  out.set_name(l.name);
  out.set_type(kind_name(l.kind()));
  for (const std::string& b : l.bottoms) out.add_bottom(b);
  for (const std::string& t : l.tops) out.add_top(t);
  std::visit(
      [&](const auto& p) {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, ConvParams>) {
          caffe::ConvolutionParameter* c = out.mutable_convolution_param();
          c->set_num_output(std::uint32_t(p.geom.num_output));
          set_conv_geom(p.geom, c);
          if (!p.geom.bias) c->set_bias_term(false);
          set_params_and_fillers(l, p.geom.bias, &out, c);
        } else if constexpr (std::is_same_v<P, PoolParams>) {
          set_pool_geom(p.geom, out.mutable_pooling_param());
        } else if constexpr (std::is_same_v<P, LrnParams>) {
          caffe::LRNParameter* r = out.mutable_lrn_param();
          r->set_local_size(std::uint32_t(p.geom.local_size));
          r->set_alpha(p.geom.alpha);
          r->set_beta(p.geom.beta);
          if (p.geom.k != 1.f) r->set_k(p.geom.k);
        } else if constexpr (std::is_same_v<P, FcParams>) {
          caffe::InnerProductParameter* ip = out.mutable_inner_product_param();
          if (p.geom.num_output > 0) ip->set_num_output(std::uint32_t(p.geom.num_output));
          if (!p.geom.bias) ip->set_bias_term(false);
          set_params_and_fillers(l, p.geom.bias, &out, ip);
        } else if constexpr (std::is_same_v<P, DropoutParams>) {
          out.mutable_dropout_param()->set_dropout_ratio(p.ratio);
        } else if constexpr (std::is_same_v<P, SoftmaxLossParams>) {
          out.add_loss_weight(p.loss_weight);
        } else if constexpr (std::is_same_v<P, AccuracyParams>) {
          if (p.top_k != 1) out.mutable_accuracy_param()->set_top_k(std::uint32_t(p.top_k));
        } else if constexpr (std::is_same_v<P, std::monostate>) {
          throw Error(fmt::format("layer {} has no type", l.name));
        }
        // ReLU, Concat (axis 1), Softmax: no parameters.
      },
      l.params);
  if (l.include != kAllStages) add_stage_rules(l.include, out.mutable_include());
  if (l.exclude != 0) add_stage_rules(l.exclude, out.mutable_exclude());
  return out;
}

LayerParameter train_val_layer_parameter(const LayerSpec& l, int num_classes) {
  LayerParameter out = cleaned_layer(l, num_classes);
  set_train_val_rule(l.in_stage(Stage::kTrain), l.in_stage(Stage::kVal), &out);
  return out;
}

NetParameter net_parameter(const NetSpec& spec, NetFile file, int num_classes, const DataSources* data) {
  NetParameter net;
  switch (file) {
    case NetFile::kOriginal:
      net.set_name(spec.name);
      for (const DataLayerSpec& d : spec.data_layers) *net.add_layer() = data_layer_parameter(spec, d);
      for (const LayerSpec& l : spec.layers) *net.add_layer() = layer_parameter(l);
      break;
    case NetFile::kTrainVal:
      add_train_val_data_layers(spec, data, net);
      for (const LayerSpec& l : spec.layers) {
        const bool in_train = l.in_stage(Stage::kTrain), in_val = l.in_stage(Stage::kVal);
        if (!(in_train || in_val) || !keep_after_cleanup(l, num_classes)) continue;
        *net.add_layer() = train_val_layer_parameter(l, num_classes);
      }
      break;
    case NetFile::kDeploy: {
      const int crop = effective_crop(spec, data);
      const int h = crop > 0 ? crop : (data ? data->height : 0),
                w = crop > 0 ? crop : (data ? data->width : 0);
      if (h <= 0 || w <= 0)
        throw Error(
            fmt::format("net {}: deploy input size unknown (no crop size and no image size)", spec.name));
      net.add_input(spec.data_top);
      caffe::BlobShape* shape = net.add_input_shape();
      for (int d : {1, data ? data->channels : 3, h, w}) shape->add_dim(d);
      bool softmax = false;
      for (const LayerSpec& l : spec.layers) {
        if (!l.in_stage(Stage::kDeploy) || !keep_after_cleanup(l, num_classes)) continue;
        LayerParameter* out = net.add_layer();
        *out = cleaned_layer(l, num_classes);
        out->clear_include();
        out->clear_exclude();
        softmax = softmax || l.kind() == LayerKind::kSoftmax;
      }
      if (!softmax)
        throw Error(
            fmt::format("net {}: the deploy stage has no Softmax layer (DIGITS requires one)", spec.name));
      break;
    }
  }
  return net;
}

std::string net_prototxt(const NetParameter& net) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(net, &text)) throw Error("cannot print a NetParameter");
  return text;
}

caffe::SolverParameter solver_parameter(const SolverSettings& s, const SolverFileOptions& opt) {
  caffe::SolverParameter p;
  p.set_solver_type(caffe::SolverParameter::SGD);
  p.set_net(opt.net);
  p.set_solver_mode(opt.gpu ? caffe::SolverParameter::GPU : caffe::SolverParameter::CPU);
  p.set_snapshot_prefix("snapshot");
  if (s.iter_size > 1) p.set_iter_size(s.iter_size);
  p.set_max_iter(std::int32_t(s.max_iter));
  p.set_snapshot(std::int32_t(s.snapshot));
  if (s.test_interval > 0) {
    p.add_test_iter(std::int32_t(s.test_iter));
    p.set_test_interval(std::int32_t(s.test_interval));
  }
  const LrSchedule& lr = s.lr;
  p.set_base_lr(float(lr.base_lr));
  p.set_lr_policy(lr_policy_name(lr.policy));
  switch (lr.policy) {
    case LrPolicy::kFixed:
      break;
    case LrPolicy::kStep:
    case LrPolicy::kSigmoid:
      p.set_stepsize(std::int32_t(lr.stepsize));
      p.set_gamma(float(lr.gamma));
      break;
    case LrPolicy::kMultiStep:
      for (std::int64_t v : lr.stepvalues) p.add_stepvalue(std::int32_t(v));
      p.set_gamma(float(lr.gamma));
      break;
    case LrPolicy::kExp:
      p.set_gamma(float(lr.gamma));
      break;
    case LrPolicy::kInv:
      p.set_gamma(float(lr.gamma));
      p.set_power(float(lr.power));
      break;
    case LrPolicy::kPoly:
      p.set_power(float(lr.power));
      break;
  }
  p.set_momentum(float(s.momentum));
  p.set_weight_decay(float(s.weight_decay));
  p.set_display(std::int32_t(s.display));
  if (opt.random_seed >= 0) p.set_random_seed(opt.random_seed);
  return p;
}

std::string solver_prototxt(const SolverSettings& s, const SolverFileOptions& opt) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(solver_parameter(s, opt), &text))
    throw Error("cannot print a SolverParameter");
  return text;
}

NetParameter parse_net_prototxt(std::string_view text, const std::string& what) {
  return parse_text<NetParameter>(text, what, "net prototxt");
}

caffe::SolverParameter parse_solver_prototxt(std::string_view text, const std::string& what) {
  return parse_text<caffe::SolverParameter>(text, what, "solver prototxt");
}

NetParameter parse_prototxt(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot open {}", path));
  std::ostringstream s;
  s << f.rdbuf();
  return parse_net_prototxt(s.str(), path);
}

}  // namespace incept

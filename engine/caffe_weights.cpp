// Caffe weights (caffe_model.h): snapshots written as Net::ToProto does, blobs read from every
// Caffe flavour's encodings, re-encoded between blob formats, and imported into a plan's
// parameters by layer name with Caffe's shape rules.
#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/caffe_model.h"
#include "engine/check.h"
#include "engine/log.h"

namespace incept {
namespace {

using caffe::BlobProto;

std::string dims_text(const std::vector<std::int64_t>& d) {
  if (d.empty()) return "scalar";
  std::string s;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i) s += 'x';
    s += std::to_string(d[i]);
  }
  return s;
}

// IEEE half -> float (subnormals, infinities and NaNs included).
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | (std::uint32_t(exp - 15 + 127) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while (!(mant & 0x400u));
    bits = sign | (std::uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
void read_raw(const std::string& raw, std::vector<float>& out) {
  const std::size_t n = raw.size() / sizeof(T);
  out.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    if constexpr (std::is_same_v<T, std::uint16_t>)
      out[i] = half_to_float(v);
    else
      out[i] = float(v);
  }
}

// A BlobProto in any encoding as dims + fp32 values; `where` names the file, layer and blob.
CaffeBlob to_blob(const BlobProto& b, const std::string& where) {
  CaffeBlob out;
  if (b.has_num() || b.has_channels() || b.has_height() || b.has_width()) {
    out.shape = {b.num(), b.channels(), b.height(), b.width()};
    out.legacy_dims = true;
  } else {
    out.shape.assign(b.shape().dim().begin(), b.shape().dim().end());
  }
  std::int64_t count = 1;
  for (std::int64_t d : out.shape) {
    if (d < 0 || d > (std::int64_t(1) << 40) || (d > 0 && count > (std::int64_t(1) << 40) / d))
      throw Error(fmt::format("{}: invalid blob dimensions {}", where, dims_text(out.shape)));
    count *= d;
  }
  if (b.data_size() > 0) {
    out.data.assign(b.data().begin(), b.data().end());
  } else if (b.double_data_size() > 0) {
    out.data.assign(b.double_data().begin(), b.double_data().end());
  } else if (b.has_raw_data()) {
    switch (b.raw_data_type()) {
      case BlobProto::FLOAT:
        read_raw<float>(b.raw_data(), out.data);
        break;
      case BlobProto::FLOAT16:
        read_raw<std::uint16_t>(b.raw_data(), out.data);
        break;
      case BlobProto::DOUBLE:
        read_raw<double>(b.raw_data(), out.data);
        break;
      default:
        throw Error(fmt::format("{}: raw_data of type {} is not supported (FLOAT, FLOAT16, DOUBLE are)",
                                where, BlobProto::Type_Name(b.raw_data_type())));
    }
  }
  if (std::int64_t(out.data.size()) != count)
    throw Error(fmt::format("{}: {} values for a {} blob ({} expected): truncated or corrupt file", where,
                            out.data.size(), dims_text(out.shape), count));
  return out;
}

// Writes dims (in `format`) and fp32 values into a cleared BlobProto.
void write_blob(const std::vector<std::int64_t>& shape, const float* v, std::int64_t count, BlobFormat format,
                BlobProto* b, const std::string& where) {
  b->Clear();
  if (format == BlobFormat::kCompatible) {
    if (shape.size() > 4)
      throw Error(fmt::format("{}: a {}-axis blob has no legacy 4-D form; use the modern blob format", where,
                              shape.size()));
    std::int64_t legacy[4] = {1, 1, 1, 1};
    std::copy(shape.begin(), shape.end(), legacy + 4 - shape.size());
    b->set_num(std::int32_t(legacy[0]));
    b->set_channels(std::int32_t(legacy[1]));
    b->set_height(std::int32_t(legacy[2]));
    b->set_width(std::int32_t(legacy[3]));
  } else {
    for (std::int64_t d : shape) b->mutable_shape()->add_dim(d);
  }
  b->mutable_data()->Resize(int(count), 0.f);
  std::memcpy(b->mutable_data()->mutable_data(), v, std::size_t(count) * sizeof(float));
}

// The axes a legacy-dims blob really has, from the layer type (Caffe's own snapshots of these
// layers: Convolution K,C,R,S + bias K; InnerProduct N,K + bias N). 0: unknown, keep 4.
std::size_t true_axes(const std::string& type, int blob) {
  if (type == "Convolution") return blob == 0 ? 4 : 1;
  if (type == "InnerProduct") return blob == 0 ? 2 : 1;
  return 0;
}

// Legacy dims -> the blob's real shape (leading 1s dropped down to the layer type's axes).
std::vector<std::int64_t> modern_shape(const CaffeBlob& blob, const std::string& type, int index) {
  if (!blob.legacy_dims) return blob.shape;
  const std::size_t axes = true_axes(type, index);
  if (axes == 0 || axes >= blob.shape.size()) return blob.shape;
  const std::size_t drop = blob.shape.size() - axes;
  for (std::size_t i = 0; i < drop; ++i)
    if (blob.shape[i] != 1) return blob.shape;
  return {blob.shape.begin() + std::ptrdiff_t(drop), blob.shape.end()};
}

caffe::NetParameter parse_net_binary(std::string_view bytes, const std::string& what) {
  if (bytes.size() > std::size_t(INT_MAX))
    throw Error(fmt::format("{}: {} bytes is larger than a caffemodel can be (2 GiB)", what, bytes.size()));
  google::protobuf::io::ArrayInputStream raw(bytes.data(), int(bytes.size()));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(
      INT_MAX);  // as Caffe's ReadProtoFromBinaryFile (default would be 64 MiB in old protobuf)
  caffe::NetParameter net;
  if (!net.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
    throw Error(fmt::format("{}: not a Caffe model (binary NetParameter): truncated or corrupt", what));
  return net;
}

std::string v1_type_name(caffe::V1LayerParameter::LayerType t) {
  switch (t) {
    case caffe::V1LayerParameter::CONVOLUTION:
      return "Convolution";
    case caffe::V1LayerParameter::INNER_PRODUCT:
      return "InnerProduct";
    default:
      return caffe::V1LayerParameter::LayerType_Name(t);
  }
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot open {}", path));
  std::ostringstream s;
  s << f.rdbuf();
  if (!f.good() && !f.eof()) throw Error(fmt::format("cannot read {}", path));
  return s.str();
}

bool same_shape(const CaffeBlob& blob, const std::vector<int>& target) {
  std::vector<std::int64_t> t(target.begin(), target.end());
  if (blob.legacy_dims) {  // Caffe: compare with the target's LegacyShape (last four axes)
    if (t.size() > 4) return false;
    t.insert(t.begin(), 4 - t.size(), 1);
  }
  return t == blob.shape;
}

}  // namespace

std::string caffemodel_bytes(const NetSpec& spec, const NetPlan& plan, std::span<const float> params,
                             BlobFormat format) {
  if (std::int64_t(params.size()) < plan.param_elems)
    throw Error(
        fmt::format("caffemodel: {} parameter values for a plan of {}", params.size(), plan.param_elems));
  caffe::NetParameter net;
  const caffe::Phase phase = plan.options.stage == Stage::kTrain ? caffe::TRAIN : caffe::TEST;
  for (const LayerPlan& lp : plan.layers) {
    const LayerSpec* ls = spec.find(lp.name);
    if (!ls)
      throw Error(fmt::format("caffemodel: layer {} of the plan is not in net {}", lp.name, spec.name));
    caffe::LayerParameter* out = net.add_layer();
    *out = train_val_layer_parameter(*ls, plan.options.num_classes);
    if (const auto* fc = std::get_if<FcParams>(&lp.params))
      out->mutable_inner_product_param()->set_num_output(std::uint32_t(fc->geom.num_output));
    out->set_phase(phase);
    for (int id : lp.param_ids) {
      const ParamPlan& p = plan.params[id];
      const std::vector<std::int64_t> shape(p.shape.begin(), p.shape.end());
      write_blob(shape, params.data() + p.offset, p.count, format, out->add_blobs(),
                 fmt::format("layer {} blob {}", lp.name, p.index));
    }
  }
  std::string bytes;
  if (!net.SerializeToString(&bytes)) throw Error("caffemodel: cannot serialize the net (over 2 GiB?)");
  return bytes;
}

std::string reencode_caffemodel(std::string_view bytes, BlobFormat format, const std::string& what) {
  caffe::NetParameter net = parse_net_binary(bytes, what);
  auto convert = [&](const std::string& name, const std::string& type, auto* blobs) {
    for (int i = 0; i < blobs->size(); ++i) {
      const std::string where = fmt::format("{}: layer {} blob {}", what, name, i);
      const CaffeBlob blob = to_blob(blobs->Get(i), where);
      write_blob(modern_shape(blob, type, i), blob.data.data(), std::int64_t(blob.data.size()), format,
                 blobs->Mutable(i), where);
    }
  };
  for (caffe::LayerParameter& l : *net.mutable_layer()) convert(l.name(), l.type(), l.mutable_blobs());
  for (caffe::V1LayerParameter& l : *net.mutable_layers())
    convert(l.name(), v1_type_name(l.type()), l.mutable_blobs());
  std::string out;
  if (!net.SerializeToString(&out))
    throw Error(fmt::format("{}: cannot serialize the re-encoded model", what));
  return out;
}

std::vector<CaffeLayerBlobs> parse_caffemodel(std::string_view bytes, const std::string& what) {
  const caffe::NetParameter net = parse_net_binary(bytes, what);
  std::vector<CaffeLayerBlobs> out;
  auto add = [&](const std::string& name, const std::string& type, const auto& blobs) {
    if (blobs.empty()) return;
    CaffeLayerBlobs l{name, type, {}};
    for (int i = 0; i < blobs.size(); ++i)
      l.blobs.push_back(to_blob(blobs.Get(i), fmt::format("{}: layer {} blob {}", what, name, i)));
    out.push_back(std::move(l));
  };
  for (const caffe::LayerParameter& l : net.layer()) add(l.name(), l.type(), l.blobs());
  for (const caffe::V1LayerParameter& l : net.layers()) add(l.name(), v1_type_name(l.type()), l.blobs());
  if (out.empty()) throw Error(fmt::format("{}: no layer has weights (not a trained caffemodel?)", what));
  return out;
}

std::vector<CaffeLayerBlobs> read_caffemodel(const std::string& path) {
  return parse_caffemodel(slurp(path), path);
}

ImportReport import_params(const std::vector<CaffeLayerBlobs>& layers, const NetPlan& plan,
                           std::span<float> params) {
  if (std::int64_t(params.size()) < plan.param_elems)
    throw Error(fmt::format("import: {} parameter values for a plan of {}", params.size(), plan.param_elems));
  std::map<std::string, const CaffeLayerBlobs*> by_name;
  for (const CaffeLayerBlobs& l : layers) by_name.emplace(l.name, &l);  // the first of a name wins
  ImportReport report;
  std::set<std::string> planned;
  for (const LayerPlan& lp : plan.layers) {
    if (lp.param_ids.empty()) continue;
    planned.insert(lp.name);
    const auto it = by_name.find(lp.name);
    if (it == by_name.end()) {
      report.missing.push_back(lp.name);
      continue;
    }
    const CaffeLayerBlobs& src = *it->second;
    std::string why;
    if (src.blobs.size() != lp.param_ids.size())
      why = fmt::format("{} blobs in the file, {} in the net", src.blobs.size(), lp.param_ids.size());
    for (std::size_t i = 0; why.empty() && i < lp.param_ids.size(); ++i) {
      const ParamPlan& p = plan.params[lp.param_ids[i]];
      if (!same_shape(src.blobs[i], p.shape))
        why = fmt::format("{} {} in the file, {} in the net", p.index == 0 ? "weights" : "bias",
                          dims_text(src.blobs[i].shape),
                          dims_text(std::vector<std::int64_t>(p.shape.begin(), p.shape.end())));
    }
    if (!why.empty()) {
      report.skipped_shape.push_back(fmt::format("{}: {}", lp.name, why));
      continue;
    }
    for (std::size_t i = 0; i < lp.param_ids.size(); ++i) {
      const ParamPlan& p = plan.params[lp.param_ids[i]];
      std::copy(src.blobs[i].data.begin(), src.blobs[i].data.end(), params.begin() + p.offset);
    }
    report.loaded.push_back(lp.name);
  }
  for (const CaffeLayerBlobs& l : layers)
    if (!planned.count(l.name)) report.ignored.push_back(l.name);
  return report;
}

ImportReport load_weights(const std::string& caffemodel, const NetPlan& plan, std::span<float> params) {
  const ImportReport r = import_params(read_caffemodel(caffemodel), plan, params);
  if (r.loaded.empty())
    throw Error(
        fmt::format("{}: no layer matches the net by name and shape ({} skipped, {} missing): is it a "
                    "model of this network?",
                    caffemodel, r.skipped_shape.size(), r.missing.size()));
  log_info("weights from {}: {} layers loaded", caffemodel, r.loaded.size());
  for (const std::string& s : r.skipped_shape)
    log_warn("  skipped (shape differs, keeps its initialisation) {}", s);
  for (const std::string& s : r.missing) log_warn("  not in the file (keeps its initialisation): {}", s);
  if (!r.ignored.empty()) log_info("  {} layers of the file are not in the net (ignored)", r.ignored.size());
  return r;
}

}  // namespace incept

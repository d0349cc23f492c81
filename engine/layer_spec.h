// A network as data: the one explicit list of layer types (INCEPT_LAYER_KINDS), each type's
// parameters struct, and the layer/net specs that models/ fill in (GoogLeNet, LeNet). Names,
// bottoms, tops, param multipliers, fillers and stage rules follow Caffe's prototxt so the
// Caffe export writes them back unchanged. No memory, no kernels here.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "kernels/shapes.h"

namespace incept {

// ---- per-type parameters ---------------------------------------------------------
struct ConvParams {
  ConvGeom geom;
};
struct ReluParams {};
struct PoolParams {
  PoolGeom geom;
};
struct LrnParams {
  LrnGeom geom;
};
struct ConcatParams {};  // along channels (axis 1): bottoms become channel slices of the top
struct FcParams {
  FcGeom geom;  // num_output 0: the dataset's class count (DIGITS leaves classifiers unset)
};
struct DropoutParams {
  float ratio = 0.5f;
};
struct SoftmaxLossParams {
  float loss_weight = 1.f;  // bottoms: scores, label
};
struct AccuracyParams {
  int top_k = 1;  // bottoms: scores, label
};
struct SoftmaxParams {};

// The one list of layer types: X(Name, ParamsStruct). The enum, the params variant, the
// type strings, the CPU dispatch and the tests are all generated from it; adding a type
// here without its LayerTraits specialization (engine/layers.h) does not compile.
#define INCEPT_LAYER_KINDS(X)           \
  X(Convolution, ConvParams)            \
  X(ReLU, ReluParams)                   \
  X(Pooling, PoolParams)                \
  X(LRN, LrnParams)                     \
  X(Concat, ConcatParams)               \
  X(InnerProduct, FcParams)             \
  X(Dropout, DropoutParams)             \
  X(SoftmaxWithLoss, SoftmaxLossParams) \
  X(Accuracy, AccuracyParams)           \
  X(Softmax, SoftmaxParams)

enum class LayerKind {
#define INCEPT_KIND_ENUM(name, params) k##name,
  INCEPT_LAYER_KINDS(INCEPT_KIND_ENUM)
#undef INCEPT_KIND_ENUM
};

// Index i of the variant is LayerKind(i); monostate (last) is "unset".
#define INCEPT_KIND_TYPE(name, params) params,
using LayerParams = std::variant<INCEPT_LAYER_KINDS(INCEPT_KIND_TYPE) std::monostate>;
#undef INCEPT_KIND_TYPE

constexpr int kNumLayerKinds = int(std::variant_size_v<LayerParams>) - 1;
// Caffe's type string: "Convolution", "ReLU", ...
const char* kind_name(LayerKind kind);

// ---- parameters, fillers, stages -----------------------------------------------------
enum class FillerKind { kConstant = 0, kXavier = 1, kGaussian = 2 };

// Caffe's fillers: constant `value`; xavier = uniform in +-sqrt(3 / fan_in) with
// fan_in = count / shape[0] (its `std` is written to the prototxt but ignored, as Caffe does);
// gaussian(0, std).
struct FillerSpec {
  FillerKind kind = FillerKind::kConstant;
  float value = 0.f;
  float std = 0.f;
};

struct ParamSpec {
  float lr_mult = 1.f;
  float decay_mult = 1.f;
  FillerSpec filler;
};

// Stage bits (DIGITS >= 5 uses stages train / val / deploy instead of phases).
enum class Stage : std::uint8_t { kTrain = 1, kVal = 2, kDeploy = 4 };
using StageMask = std::uint8_t;
constexpr StageMask kAllStages = 7;
constexpr StageMask stage_bit(Stage s) {
  return StageMask(s);
}
const char* stage_name(Stage s);  // "train", "val", "deploy"

struct LayerSpec {
  std::string name;
  LayerParams params = std::monostate{};
  std::vector<std::string> bottoms, tops;
  std::vector<ParamSpec> param_specs;  // weights, bias (Convolution, InnerProduct)
  StageMask include = kAllStages;      // `include { stage: ... }` (all: no include rule)
  StageMask exclude = 0;               // `exclude { stage: ... }`

  LayerKind kind() const { return LayerKind(params.index()); }
  bool in_stage(Stage s) const { return (include & stage_bit(s)) && !(exclude & stage_bit(s)); }
};

// A Caffe Data layer of DIGITS' prototxt (tops `data`, `label`); DIGITS injects the source
// and the mean. Kept so the export can write it back.
struct DataLayerSpec {
  std::string name;  // "train-data", "val-data"
  Stage stage = Stage::kTrain;
  int crop_size = 0;
  bool mirror = false;
  int batch_size = 0;
  float scale = 1.f;  // transform_param.scale (LeNet: 0.0125)
};

struct NetSpec {
  std::string name;
  std::string data_top = "data", label_top = "label";
  std::vector<DataLayerSpec> data_layers;
  std::vector<LayerSpec> layers;

  const DataLayerSpec* data_layer(Stage s) const;
  const LayerSpec* find(const std::string& layer_name) const;
};

}  // namespace incept

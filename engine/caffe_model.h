// Caffe model files from and to incept's net description (engine/layer_spec.h), written the
// way NVIDIA DIGITS writes them so that BVLC Caffe 1.0, NVIDIA Caffe 0.15 (a Jetson TX2) and
// OpenCV's dnn load what we export:
//
// - net_parameter(): caffe.NetParameter of train_val.prototxt (Data layers with LMDB sources
//   and transform_param, stage rules turned into phase rules), deploy.prototxt (net-level
//   `input` + `input_shape`, no data/loss/accuracy layers, the deploy-stage Softmax) or
//   original.prototxt (the network as submitted: stage rules, classifiers without
//   num_output), following DIGITS' caffe_train.py save_files_classification. Nothing newer
//   than Caffe 1.0 is written (no Input layer, no PoolingParameter.round_mode).
// - net_prototxt() / solver_prototxt(): text through protobuf's TextFormat, never pasted.
// - caffemodel_bytes(): a snapshot as Caffe's Net::ToProto writes it (each layer's parameters
//   and its blobs), weights fp32 in Caffe's layout (= the host layout of NetPlan::params), in
//   one of two blob formats (BlobFormat).
// - read_caffemodel() / import_params(): blobs from any Caffe flavour (legacy 4-D dims or
//   BlobShape, float/double data, NVCaffe's raw FLOAT/FLOAT16/DOUBLE bytes, V1 `layers`),
//   copied into a plan's parameters by layer name; layers whose shapes differ (a classifier
//   for another class count) are skipped and reported, as fine-tuning needs.
// - net_spec_from_prototxt(): the reverse, for the layer types of INCEPT_LAYER_KINDS, so an
//   archive's deploy.prototxt (or any Caffe deploy of those types) runs on incept.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/caffe.pb.h"
#include "engine/layer_spec.h"
#include "engine/net_plan.h"
#include "engine/solver.h"

namespace incept {

// How caffemodel blobs store their dimensions.
// kCompatible (DIGITS' "Compatible" blob format, the default): float `data` with the legacy
//   num/channels/height/width, Caffe's LegacyShape (the last four axes, padded with leading 1s:
//   convolution weights KxCxRxS, InnerProduct weights 1x1xNxK, biases 1x1x1xN); no `shape`, no
//   raw_data. Every Caffe since 2014 and OpenCV load it.
// kModern: BlobShape `shape` (Caffe >= rc3's own snapshots) + float `data`.
enum class BlobFormat { kCompatible, kModern };
BlobFormat parse_blob_format(std::string_view name);  // "compatible" | "modern"; throws Error
const char* blob_format_name(BlobFormat f);

enum class NetFile { kTrainVal, kDeploy, kOriginal };

// What DIGITS injects into the network's data layers for one dataset (train_val.prototxt), and
// the image size deploy.prototxt's input falls back to when there is no crop.
struct DataSources {
  std::string train_db, val_db;             // LMDB folders; an empty val_db leaves out the val-data layer
  std::string mean_file;                    // mean.binaryproto for transform_param.mean_file (mean "image")
  std::vector<float> mean_value;            // per-channel BGR mean instead (mean "pixel"); both empty: none
  int batch_size = 0, val_batch_size = 0;   // 0: the network's data_param.batch_size
  int crop_size = 0;                        // 0: the network's crop_size (clamped to the image)
  int channels = 3, height = 0, width = 0;  // the dataset's image dims (records)
};

// The NetParameter DIGITS writes for `file` (see the file comment). num_classes fills every
// InnerProduct whose num_output is unset (train_val, deploy) and drops Accuracy layers whose
// top_k exceeds it. `data` may be null for kOriginal; kDeploy without it uses 3 channels and the
// network's crop size.
caffe::NetParameter net_parameter(const NetSpec& spec, NetFile file, int num_classes,
                                  const DataSources* data);
// One layer as Caffe's LayerParameter (its own stage rules, num_output 0 left unset), and as
// train_val.prototxt has it (phase rules, num_output 0 -> num_classes).
caffe::LayerParameter layer_parameter(const LayerSpec& layer);
caffe::LayerParameter train_val_layer_parameter(const LayerSpec& layer, int num_classes);

// protobuf text format (what Caffe and DIGITS read and write).
std::string net_prototxt(const caffe::NetParameter& net);
// solver.prototxt as DIGITS writes it (digits-facts §3.2): solver_type SGD (the deprecated
// enum, field 30, which every Caffe since 2014 reads), net, solver_mode, snapshot_prefix
// "snapshot", test_iter/test_interval when there is a validation set, the learning-rate policy
// and its parameters, momentum, weight_decay, display, iter_size > 1, random_seed >= 0.
struct SolverFileOptions {
  std::string net = "train_val.prototxt";
  bool gpu = true;                // solver_mode GPU (else CPU)
  std::int64_t random_seed = -1;  // written when >= 0
};
caffe::SolverParameter solver_parameter(const SolverSettings& s, const SolverFileOptions& opt = {});
std::string solver_prototxt(const SolverSettings& s, const SolverFileOptions& opt = {});

// Text format -> message; throws Error naming `what` (a file name) and the line of a parse error.
caffe::NetParameter parse_net_prototxt(std::string_view text, const std::string& what);
caffe::NetParameter parse_prototxt(const std::string& path);
caffe::SolverParameter parse_solver_prototxt(std::string_view text, const std::string& what);

// ---- weights -----------------------------------------------------------------------------------

// A snapshot's bytes (binary NetParameter): for each layer of `plan` (forward order), its
// LayerParameter as in train_val.prototxt (phase rules, `phase` = the plan's phase) and, for
// layers with parameters, their blobs from `params` (the plan's layout, fp32, Caffe's layout).
std::string caffemodel_bytes(const NetSpec& spec, const NetPlan& plan, std::span<const float> params,
                             BlobFormat format);
// The same snapshot re-encoded in `format` (layer parameters kept; blobs read in any format).
std::string reencode_caffemodel(std::string_view bytes, BlobFormat format, const std::string& what);

struct CaffeBlob {
  std::vector<std::int64_t> shape;  // `shape` dims, or num/channels/height/width when legacy
  std::vector<float> data;
  bool legacy_dims = false;  // shape came from num/channels/height/width (compared as Caffe does)
};
struct CaffeLayerBlobs {
  std::string name, type;
  std::vector<CaffeBlob> blobs;
};
// Every layer of a caffemodel that has blobs, in file order. Throws Error naming the file for
// anything unreadable (truncated, not a NetParameter, a blob whose data count differs from its
// shape, an unsupported raw type). Files up to 2 GiB (Caffe's limit).
std::vector<CaffeLayerBlobs> read_caffemodel(const std::string& path);
std::vector<CaffeLayerBlobs> parse_caffemodel(std::string_view bytes, const std::string& what);

struct ImportReport {
  std::vector<std::string> loaded;         // layers whose blobs were copied
  std::vector<std::string> skipped_shape;  // "layer: why" (shape or blob count differs)
  std::vector<std::string> missing;        // plan layers with parameters the file lacks
  std::vector<std::string> ignored;        // file layers with blobs that the plan lacks
};
// Copies blobs into `params` (the plan's layout) by layer name, as Caffe's
// Net::CopyTrainedLayersFrom does: every blob of a layer must match (legacy 4-D dims are
// compared with the parameter's shape padded to four axes, BlobShape dims exactly), else the
// whole layer is skipped and reported. Parameters of skipped/missing layers are left as they are.
ImportReport import_params(const std::vector<CaffeLayerBlobs>& layers, const NetPlan& plan,
                           std::span<float> params);
// train_googlenet --weights: read_caffemodel + import_params, logging what was loaded and, by
// name, every layer skipped or missing. Throws Error when nothing at all matched.
ImportReport load_weights(const std::string& caffemodel, const NetPlan& plan, std::span<float> params);

// ---- prototxt -> NetSpec -------------------------------------------------------------------------

// A Caffe net of the layer types in INCEPT_LAYER_KINDS (+ Data layers, an Input layer or
// net-level inputs) as a NetSpec. Phase rules become stage rules (TRAIN -> train, TEST -> val
// and deploy). Throws Error naming the layer for an unsupported type or option (grouped or
// dilated convolutions, stochastic pooling, WITHIN_CHANNEL LRN, leaky ReLU, ...).
NetSpec net_spec_from_prototxt(const caffe::NetParameter& net);
// The deploy input: {N, C, H, W} of net-level input_shape / input_dim or an Input layer.
std::vector<std::int64_t> deploy_input_shape(const caffe::NetParameter& net);

}  // namespace incept

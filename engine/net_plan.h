// The static plan of a net for one stage, batch and input size: layers resolved from a
// NetSpec (stage rules applied, classifier sizes filled), blob shapes and strides, where
// every activation, gradient and per-layer saved state lives in the activation arena
// (lifetime-based, engine/memory_plan.h), the parameter layout, and the workspace size.
// It holds offsets only; a backend (CpuNet here, a GPU net later) allocates the arenas.
//
// Concat is free: each bottom of a Concat is planned as a channel slice of the Concat's top
// (offset + c0*H*W, n_stride = C_total*H*W), so branches write straight into it and their
// gradients are read straight out of its gradient. In-place layers (ReLU, Dropout whose top
// names their bottom) share the bottom's blob.
//
// Time line of a training step with L layers: forward of layer i at time i, backward of
// layer i at time 2L-1-i. Values live from their producer's forward to the last backward
// that touches them; gradients from the first backward that writes them to the last that
// reads them; forward-only plans free values after their last consumer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/layer_spec.h"

namespace incept {

struct PlanOptions {
  Stage stage = Stage::kTrain;
  bool training = true;  // plan gradients and run Dropout; false: forward only
  int batch = 0;         // 0: the stage's data layer batch_size
  int channels = 3;
  int height = 0, width = 0;  // network input (after crop); 0: the data layer's crop_size
  int num_classes = 0;        // fills InnerProduct num_output 0 (DIGITS' classifiers)
  std::int64_t align = 64;    // arena offset alignment in elements
  // Find BranchRegions (concurrent branches) and plan memory so they may run concurrently
  // (a little more arena: buffers touched in one region never share memory).
  bool branch_regions = true;
  // With branch_regions: an auxiliary head (GoogLeNet's loss1/loss2: layers that read only the
  // fork blob of the next inception region, labels and each other, ending in losses or
  // accuracies that no later layer reads) joins that region as one more branch, so a GPU may
  // run it beside the module instead of before it (with GpuNetOptions::branch_lanes 5, on its
  // own stream: H200, batch 128, 7.72 -> 7.60 ms a step; batch 64, 4.60 -> 4.50 ms).
  bool side_heads = true;
};

struct BlobPlan {
  std::string name;
  Nchw shape;                     // view: n_stride > C*H*W for concat slices
  std::int64_t offset = -1;       // values: elements into the activation arena (-1: labels)
  std::int64_t diff_offset = -1;  // gradient; -1: no gradient flows here
  int producer = -1;              // layer index (-1: net input)
  int root = -1;                  // blob whose storage this one is a slice of (itself if none)
  int root_channel = 0;           // channel offset within the root
  bool is_input = false;          // the data blob
  bool is_label = false;          // int32 labels, kept outside the arena
  bool is_output = false;         // consumed by no layer (loss, accuracy, softmax)
};

struct ParamPlan {
  std::string layer;
  int index = 0;           // 0 weights, 1 bias
  std::vector<int> shape;  // Caffe blob shape: {K, C, R, S}, {M, K}, {K}
  std::int64_t count = 0;
  std::int64_t offset = 0;  // elements into the parameter (and gradient, momentum) arena
  float lr_mult = 1.f, decay_mult = 1.f;
  FillerSpec filler;
};

struct LayerPlan {
  std::string name;
  LayerParams params;
  std::vector<int> bottoms, tops;  // blob ids
  std::vector<char> bottom_diff;   // backward writes bottom i's gradient
  std::vector<char> accumulate;    // ... adding to it (fan-out) instead of overwriting
  std::vector<int> zero_diffs;     // root blobs whose gradient no consumer writes: zero them
                                   // just before this layer's backward
  std::vector<int> param_ids;
  std::int64_t saved_offset = -1, saved_elems = 0;
  std::int64_t workspace_elems = 0;
  bool run_backward = false;
  float loss_weight = 0.f;

  LayerKind kind() const { return LayerKind(params.index()); }
};

// Branches that may run at the same time (an inception module): the layers [first, last], `last`
// the Concat that joins them, every layer in between on exactly one branch, each branch a chain
// from one shared input blob (`fork`, produced before `first`) to one bottom of the Concat; with
// PlanOptions::side_heads also an auxiliary head (the last branch), which reads the fork and
// ends in its losses.
// A GPU backend may run each branch on its own stream between a fork at `first` and a join at
// `last` (backward: the reverse); the memory plan keeps every buffer touched inside a region
// apart from every other one touched there, so no reuse of arena memory can race.
struct BranchRegion {
  int first = 0, last = 0;
  int fork = -1;            // the blob every branch reads first
  std::vector<int> branch;  // per layer of [first, last]: its branch (0, 1, ...); the Concat 0
  int branches() const;
};

struct NetPlan {
  std::string name;
  PlanOptions options;
  std::vector<LayerPlan> layers;  // forward order
  std::vector<BlobPlan> blobs;
  std::vector<ParamPlan> params;  // forward layer order: reverse-order buckets are contiguous
  int data_blob = -1, label_blob = -1;
  std::int64_t activation_elems = 0;  // arena of values + gradients + saved state
  std::int64_t unshared_elems = 0;    // what it would be without lifetime reuse
  std::int64_t param_elems = 0;       // arena of parameters (= gradients = momentum)
  std::int64_t workspace_elems = 0;   // largest per-layer scratch
  std::vector<BranchRegion> regions;  // in layer order, disjoint (PlanOptions::branch_regions)

  std::int64_t param_count() const;               // learnable values (without alignment padding)
  int blob(const std::string& name) const;        // latest blob of that name; throws if none
  int find_layer(const std::string& name) const;  // -1 if none
  int conv_count() const;
  // The region layer l belongs to, or null.
  const BranchRegion* region_of(int l) const;
  // "activations 123.4 MiB (unshared 456.7), params 51.0 MiB x3, workspace 9.8 MiB" for T of `bytes`.
  std::string memory_summary(int bytes_per_elem = 4) const;
};

// Throws incept::Error with a message naming the layer when the spec is inconsistent.
NetPlan plan_net(const NetSpec& spec, const PlanOptions& options);

}  // namespace incept

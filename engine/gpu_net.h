// The GPU backend of a planned net (engine/net_plan.h): the same plan as CpuNet, with device
// arenas (activations + gradients in one lifetime-planned arena of the activation dtype;
// fp32 master parameters, gradients of the activation dtype and fp32 momentum in three
// buffers of identical layout; a bf16 copy of the weights in bf16 mode), one shared cuDNN
// workspace, and forward/backward through cuDNN, cuBLAS/cuBLASLt and kernels/*_gpu.h.
//
// A training step (zero gradients, forward, backward, SGD update) is enqueued on one stream
// and never waits for the host: per-step values (iteration for the dropout masks, learning
// rate, momentum, weight decay) live in a small device struct that one async copy refreshes
// before the step, so the whole step can be captured once as a CUDA graph and replayed.
// Eager mode (step(..., graph = false)) runs the same launches and gives identical results.
//
// Fusions: a Convolution followed by its in-place ReLU runs bias+ReLU in one pass (cuDNN's
// fused call, cuBLASLt's GEMM epilogue, or one bias_relu kernel) and one relu_bias backward
// pass; the ReLU layer itself is then skipped. Concat costs nothing: branches write into
// channel slices (NetPlan).
//
// Layout: NCHW by default; channels_last keeps every activation NHWC (same arena offsets,
// slices start at channel c0 of the first pixel, see kernels/layout.h) and convolution
// filters KRSC on the device. How each convolution runs (gpu_net_conv.cpp): GEMM
// convolutions (1x1, conv1, and RxS in fp32 via im2col) write their slice directly through
// the GEMM's row stride; cuDNN cannot write an NHWC channel slice, so a cuDNN branch writes a
// dense staging buffer and its bias+ReLU pass writes the slice (the concat copy rides on a
// pass that runs anyway); backward reads the slice and writes the masked gradient densely
// there. Every host API (parameters, gradients, blob read-back, set_input) stays NCHW / KCRS:
// the permutations happen at the boundary. recommended_options() picks dtype and layout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/cudnn_conv.h"
#include "engine/gpu_fc.h"
#include "engine/gpu_params.h"
#include "engine/grad_buckets.h"
#include "engine/net_plan.h"
#include "engine/owners.h"
#include "kernels/dtype_gpu.h"
#include "kernels/sgd_gpu.h"

namespace incept {

// How a channels-last net runs its RxS > 1 convolutions: cuDNN, im2col + one cuBLAS GEMM
// over all pixels (col2im for the data gradient), or (fp32, 3x3 / stride 1 / pad 1 layers; the
// others as GEMM) F(2x2, 3x3) Winograd on strict cuBLAS GEMMs (engine/winograd_conv.h). Auto:
// in fp32 GEMM where the GEMMs run 3xTF32 (GpuNetOptions::tf32x3), Winograd where they are FMA
// fp32 (2.25x fewer products at the GEMM's error: GoogLeNet's 3x3 layers 20.7 -> 13.5 ms at batch
// 128 on an H200); cuDNN's NHWC FMA kernels are ~5x slower than NCHW, and their timing-chosen
// algorithms were seen at a 6e-4 median gradient error on GoogLeNet. bf16: cuDNN (faster there:
// 11.7 vs 13.9 ms/step).
enum class SpatialConv { kAuto, kCudnn, kGemm, kWinograd };

struct GpuNetOptions {
  kernels::DType dtype = kernels::DType::kF32;  // activations, gradients, compute weights
  bool allow_tf32 = false;                      // fp32 mode: let cuDNN/cuBLAS use TF32 tensor cores
  bool allow_winograd = false;                  // fp32 mode: non-fused Winograd on 3x3 (faster, less precise)
  bool measure_algorithms = true;               // time cuDNN algorithms when the net is built
  bool deterministic = false;  // deterministic cuDNN algorithms, chosen by heuristics (not timing)
  // fp32 only, an experiment: every parameter gradient the update reads (after the all-reduce,
  // with several GPUs) is first rounded to bf16, the storage a bf16 net's gradients have, while
  // everything else stays fp32. Training with and without it measures what that rounding alone
  // costs (issue #12; tests/test_bf16_grads.cpp does the same on the CPU).
  bool round_grads_bf16 = false;
  bool fuse_conv_relu = true;
  // NCHW fp32: 1x1 stride-1 convolutions as strided-batched cuBLAS GEMMs (engine/conv1x1_gemm.h)
  // instead of cuDNN.
  bool gemm_1x1 = true;
  SpatialConv spatial_conv = SpatialConv::kAuto;
  // Channels-last GEMM convolutions (fp32's RxS layers and conv1; bf16 with SpatialConv::kGemm
  // or without few_channel_conv) run im2col, their GEMMs and col2im on chunks of whole images:
  // the most images whose im2col rows fit im2col_chunk_bytes (a divisor of the batch, at least
  // one image; 0: the whole batch at once). Training either keeps each layer's rows of the
  // whole batch from forward for its weight gradient (keep_im2col) or rebuilds them chunk by
  // chunk in backward in its lane's one row buffer, which also takes each chunk's row gradient
  // for col2im. GoogLeNet fp32 at batch 128 on an H200 (session 11): rows kept, whole batch:
  // 37.1 ms/step, 9,550 MiB in use; rebuilt in chunks of 256 MiB (the defaults): 39.0 ms,
  // 4,480 MiB, under the 4,959 MiB PyTorch's compiled fp32 step allocates (benchmarks/RESULTS.md).
  bool keep_im2col = false;
  std::size_t im2col_chunk_bytes = std::size_t(256) << 20;
  // Winograd convolutions (SpatialConv::kWinograd, and auto with FMA GEMMs) run over the whole
  // batch where their workspace (engine/winograd_conv.h: 4x the input and output, at 2x2 tiles)
  // fits winograd_chunk_bytes (0: always), else on chunks of images, the most whose workspace
  // fits, and one more convolution for the rest of the batch. The workspace is the lane's row
  // buffer. A layer in chunks runs them alternately on its lane's stream and a second one
  // (winograd_streams 2; 1: one stream), each chunk in half of winograd_chunk_bytes, so that one
  // chunk's memory-bound transforms overlap the other's GEMMs. GoogLeNet fp32 with FMA GEMMs at
  // batch 128 on an H200 (session 17, ms/step and MiB in use): 128 MiB 32.34 / 4,456,
  // 256 MiB 31.76 / 4,586, 384 MiB (the default) 31.59 / 4,836, 512 MiB 31.52 / 5,068; one
  // stream at 384 MiB 31.69; PyTorch's compiled fp32 step allocates 4,872 MiB.
  std::size_t winograd_chunk_bytes = std::size_t(384) << 20;
  int winograd_streams = 2;
  // fp32: the GEMM convolutions and inner products run incept's 3xTF32 tensor-core kernel
  // (kernels/gemm_tf32x3_gpu.h: fp32 accuracy, checked against FMA fp32 by its tests) wherever
  // it is expected to beat cuBLAS (kernels::tf32x3_preferred; compute capability 8.0+),
  // cuBLAS's strict fp32 elsewhere. tf32x3_all_shapes: wherever it takes the shape (tests).
  // recommended_options turns it on for compute capability 8.0+.
  bool tf32x3 = false;
  bool tf32x3_all_shapes = false;
  // GEMM convolutions (channels-last): bias and ReLU in cuBLASLt's epilogue where it has an
  // algorithm for the shape, instead of a separate pass over the output.
  bool gemm_epilogue = true;
  // NCHW: keep LRN's scale (fp32) from forward, else recompute it in backward. Channels-last
  // always recomputes: the window is a few registers there, and storing the scale costs more
  // memory traffic (4 bytes per element written and read) than the whole bf16 layer.
  bool save_lrn_scale = true;
  bool channels_last = false;  // NHWC activations and KRSC filters on the device (see above)
  // Largest cuDNN workspace one algorithm may use; 0: by dtype, 512 MiB in bf16 (conv1's
  // tensor-op wgrad needs 300 MiB: 2.9 -> 0.95 ms on H100) and 256 MiB in fp32 (unchanged;
  // 512 MiB was not shown to help fp32).
  std::size_t workspace_limit = 0;
  // Channels-last bf16 cuDNN convolutions: how many of the backend API's heuristic engine
  // configs each direction times against the legacy algorithm (engine/cudnn_graph.h).
  int graph_configs = 12;
  // Branches of a BranchRegion (inception modules, engine/net_plan.h) on up to this many streams
  // (lanes), each lane with its own scratch and cuBLAS workspace (the net's cuDNN and cuBLAS
  // handles are bound to the running layer's lane), forked and joined with events (captured into
  // the step's graph as parallel branches); 1: one stream. Narrow branch layers leave most SMs
  // idle one at a time. Results do not depend on it: a gradient that several branches add to is
  // added in the one-stream order, and a branch's convolution waits for the branch before it only
  // just before adding its data gradient. GoogLeNet's modules have 4
  // branches, 5 where an auxiliary head joins (PlanOptions::side_heads); a net uses no more
  // lanes than its regions have branches.
  int branch_lanes = 5;
  // Training, channels-last: an LRN whose input is a folded ReLU's output, read by nothing else
  // (GoogLeNet's norm2 after conv2/3x3), applies that ReLU's mask in its own backward pass, and
  // the convolution's bias pass then reads dy once instead of y and dy, writing nothing (H200,
  // batch 128: conv2/3x3 backward 0.506 -> 0.438 ms, norm2 0.249 -> 0.263; the same bits; step
  // 7.61 -> 7.52 ms).
  bool lrn_relu_mask = true;
  // The same for a MAX pooling (GoogLeNet's pool1 after conv1): its forward marks windows whose
  // maximum is not positive as having no winner (kernels/pool_gpu.h), so its backward gives
  // those inputs no gradient, and conv1's weight gradient reads dy alone, not y.
  bool pool_relu_mask = true;
  // The step's CUDA graph runs the memsets cuBLAS and cuDNN capture as kernel nodes
  // (engine/graph_rewrite.h): a memset node stalls its stream for a few microseconds.
  bool memset_kernels = true;
  // Channels-last bf16 from compute capability 8.0: a first convolution with few input
  // channels (conv1) as an implicit GEMM on tensor cores (kernels/conv_few_channels_gpu.h),
  // forward with bias and ReLU, weight gradient through the ReLU mask, instead of im2col rows
  // + cuBLAS (false: that path). Saves the rows: GoogLeNet's device memory 2,669 -> 2,198 MiB
  // at batch 128 and 1,480 -> 1,257 MiB at batch 64 (H200), at the same step time within the
  // order in which runs are timed (8.58 vs 8.64 ms at batch 128 in one call, 9.13 vs 8.92 in
  // another, the second run faster each time). Channels-last fp32: conv1 as a direct
  // convolution with FMA arithmetic (kernels/conv_few_fp32_gpu.h) instead of im2col rows +
  // GEMM, where the device gives a block the shared memory it needs (A100, H100, H200): 2.8 ->
  // 1.7 ms a step at batch 128 on an H200 (session 18). Elsewhere (NCHW, older GPUs, shapes
  // the kernels do not cover) it changes nothing. With it, conv1's output gradient stays
  // unmasked in the blob (no layer reads it).
  bool few_channel_conv = true;
  std::uint64_t dropout_seed = 0;
  // Data parallelism: this replica's first example within the global batch, so dropout masks
  // are those of the same examples on one GPU (kernels/dropout_ref.h).
  std::uint64_t dropout_first_sample = 0;
};

// The options a trainer should start from on GPU `device`: bf16 where the GPU has bf16 tensor
// cores (compute capability 8.0 and up), else fp32 (a P100 is 6.0); channels-last from 7.0 up
// (measured faster in both dtypes on H100), NCHW on older GPUs (cuDNN's mature path there;
// not measured here).
GpuNetOptions recommended_options(int device);
// The same with the activation dtype the caller chose (--precision, --dtype): what the trainer
// runs, what bench_train_step times unless a flag says otherwise, and what
// tests/test_gpu_b128.cpp checks against the CPU reference.
GpuNetOptions recommended_options(int device, kernels::DType dtype);

// Solver values of one step, copied to the device before the step runs.
struct StepValues {
  std::uint64_t iteration = 0;  // keys the dropout masks
  float lr = 0.f;
  float momentum = 0.9f;
  float weight_decay = 0.f;
  float grad_scale = 1.f;
};

// Data parallelism: with a communicator over the replicas, backward sums each gradient bucket
// (engine/grad_buckets.h) over all replicas as soon as it is complete, on a side stream that
// overlaps the rest of backward, inside the step (and its CUDA graph); update() waits for the
// sums. The step's StepValues::grad_scale turns the sum into the mean (1 / replicas).
struct GradReduceOptions {
  ncclComm_t comm = nullptr;  // null: no reduction (one replica)
  // bf16 nets: widen each bucket to fp32 and sum it in fp32 (GpuParams::enable_fp32_grad_sum),
  // so the replicas' sum is as exact as one GPU's gradient; false sums the bf16 gradients as
  // they are (half the bytes on the wire, one more bf16 rounding). fp32 nets always sum fp32.
  bool sum_fp32 = true;
  std::size_t first_bucket_bytes = std::size_t(1) << 20;
  std::size_t bucket_bytes = std::size_t(25) << 20;
};

// Where the all-reduce time of a step goes (eager steps timed with CUDA events, medians).
struct ReduceTiming {
  int buckets = 0;
  double grad_bytes = 0;        // bytes all-reduced per step
  float backward_ms = 0;        // backward of the whole net (compute stream)
  float allreduce_ms = 0;       // first bucket's start to the last bucket's end (side stream)
  float allreduce_busy_ms = 0;  // sum of the buckets' own times
  float exposed_ms = 0;         // all-reduce time after backward ended (not overlapped)
};

// Time of one layer's forward and backward (eager, CUDA events), for `caffe time`-style tables.
struct LayerTime {
  std::string name;
  std::string type;
  float forward_ms = 0.f;
  float backward_ms = 0.f;
};

class GpuNet {
 public:
  // Allocates everything and chooses the cuDNN algorithms (this synchronizes; a step never does).
  // `params`: the replica's parameter store to share (e.g. the training net's, for a
  // validation net); null: the net makes its own. A shared store must match the plan's
  // parameter layout and the options' dtype and layout.
  GpuNet(NetPlan plan, const GpuNetOptions& options, std::shared_ptr<GpuParams> params = nullptr);
  ~GpuNet();
  GpuNet(const GpuNet&) = delete;
  GpuNet& operator=(const GpuNet&) = delete;

  const NetPlan& plan() const { return plan_; }
  const GpuNetOptions& options() const { return opt_; }
  cudaStream_t stream() const { return stream_; }

  // Network input: device dense [batch, C, H, W] of the activation dtype, NCHW, or NHWC
  // when options().channels_last (the input transform writes either).
  void* data() const;
  // Uploads a dense NCHW fp32 host batch into data() (converting layout and dtype); synchronizes.
  void set_input(std::span<const float> nchw);
  // Labels: device int32[batch].
  std::int32_t* labels() const { return labels_.as<std::int32_t>(); }

  // The parameter store (shared with other nets of this replica).
  const std::shared_ptr<GpuParams>& params() const { return params_; }
  // Parameters as fp32 in the plan's layout (param_elems values, padding included).
  void set_params(std::span<const float> host);
  void get_params(std::span<float> host) const;
  void get_grads(std::span<float> host) const;  // converted to fp32
  void get_momentum(std::span<float> host) const;
  void set_momentum(std::span<const float> host);
  void init_params(std::uint64_t seed);  // Caffe fillers (engine/fillers.h), then upload
  void zero_momentum();

  // The pieces of a step, enqueued on stream() (no host waits).
  void set_step_values(const StepValues& v);  // async copy from pinned memory
  void zero_grads();
  void forward();
  void backward();
  void update();
  // zero_grads + forward + backward (+ update when `update`). With graph = true the first
  // call captures the sequence into a CUDA graph and later calls replay it.
  void train_step(const StepValues& v, bool graph, bool update = true);
  // Forward only (validation): training = false nets skip Dropout.
  void forward_step(const StepValues& v);

  // Sums of the scalar outputs over steps: every train_step adds its outputs (inside the
  // graph); accumulate_outputs(w) adds w x the current outputs (validation: w = the batch's
  // valid examples). take_output_sums() synchronizes, returns (top name, sum) and zeroes them.
  void accumulate_outputs(double weight);
  std::vector<std::pair<std::string, double>> take_output_sums();

  // Reads a scalar output (loss, accuracy) by top name: synchronizes the stream.
  float output(const std::string& top) const;
  std::vector<std::pair<std::string, float>> scalar_outputs() const;
  // A blob's values / gradient as fp32 (logical NCHW shape, dense): synchronizes.
  std::vector<float> blob_data(int blob) const;
  std::vector<float> blob_diff(int blob) const;
  // Writes a blob's values / gradient from dense NCHW fp32 host values (converted to the
  // layout and dtype; the rest of the arena is left as it is): synchronizes.
  void set_blob_data(int blob, std::span<const float> nchw);
  void set_blob_diff(int blob, std::span<const float> nchw);

  // One layer alone, enqueued like a step's (tests pin an error to one layer with these and
  // set_blob_data/diff: the layer reads what the arena holds). A convolution runs the ReLU
  // folded into it (see "Fusions"); the folded ReLU layer itself then does nothing.
  void forward_layer(int l);
  void backward_layer(int l);
  bool relu_folded(int l) const;
  // With GpuNetOptions::lrn_relu_mask / pool_relu_mask: layer l is a convolution whose folded
  // ReLU's mask its consumer applies (its backward_layer takes dy already masked), or the LRN
  // or MAX pooling that applies it (its input gradient is +0 where its input is not positive).
  bool relu_mask_left_to_consumer(int l) const;
  bool applies_relu_mask(int l) const;

  // Data parallelism (see GradReduceOptions); call before the first step.
  void set_grad_reduce(const GradReduceOptions& options);
  const std::vector<GradBucket>& grad_buckets() const { return buckets_; }
  // `iters` eager steps without update, timed; `guard(false)` runs before each step is enqueued
  // and `guard(true)` right after (the trainer checks and watches its NCCL group there).
  ReduceTiming time_grad_reduce(const StepValues& v, int iters,
                                const std::function<void(bool enqueued)>& guard = {});

  // Per-layer forward/backward times over `iters` eager steps (median per layer).
  std::vector<LayerTime> time_layers(int iters);
  // Device memory by arena, for the start-up report.
  std::string memory_report() const;
  std::size_t device_bytes() const;
  // How each convolution runs: the cuDNN algorithms chosen, or the kernel that runs conv1.
  std::vector<std::string> algorithm_report() const;
  // How many convolutions run as Winograd F(2x2, 3x3) (SpatialConv).
  int winograd_layers() const;

 private:
  struct Layer;  // per-layer device state (descriptors, pointers), gpu_net_layer.h
  struct Lane;   // a stream with its handles and scratch (branch_lanes), gpu_net_layer.h
  // gpu_net_conv.cpp: one convolution's plan (algorithms, GEMM shapes, buffers) and its step;
  // plan_lanes() sizes the scratch it runs with.
  void plan_conv(std::size_t l, void* probe_ws, std::size_t probe_bytes);
  void fold_relu(std::size_t l);  // runs the following in-place ReLU in the convolution's bias pass
  // Training, channels-last: an LRN (`lrn`) or MAX pooling (`max_pool`) whose input is a folded
  // ReLU's output and its only reader applies that ReLU's mask (Layer::relu_mask), instead of
  // the convolution (whose bias pass then only sums the bias gradient, reading dy once, and
  // conv1's weight gradient does not read y).
  void fold_relu_masks(bool lrn, bool max_pool);
  template <typename T>
  void conv_forward(Layer& L, const Lane& R);
  template <typename T>
  void conv_backward(Layer& L, const Lane& R);
  template <typename T>
  void spatial_gemm_forward(Layer& L, const Lane& R);
  template <typename T>
  void spatial_gemm_backward(Layer& L, const Lane& R, T* dz);
  void winograd_forward(Layer& L, const Lane& R);
  void winograd_backward(Layer& L, const Lane& R, float* dz);
  void build_layers();
  void plan_lanes();  // lanes_, lane_of_ and every lane's scratch (after the convolutions are planned)
  void run_forward(int l, const Lane& R);
  void run_backward(int l, const Lane& R);
  void wait_input_grad(const Lane& R);  // issues and clears input_grad_waits_ on R's stream
  // Points cudnn_ and cublas_ at R's stream, and cublas_ at R's workspace (run_forward,
  // run_backward).
  void bind_handles(const Lane& R);
  void fork(const BranchRegion& r);  // side lanes of r wait for the main stream
  void join(const BranchRegion& r);  // the main stream waits for r's side lanes
  std::size_t lanes_bytes() const;   // scratch the side lanes own
  void enqueue_step(bool update);
  std::int64_t act_offset(int blob, std::int64_t nchw_offset) const;  // arena offset in this layout
  std::size_t im2col_bytes() const;

  NetPlan plan_;
  GpuNetOptions opt_;
  std::size_t esize_;  // bytes per activation element
  Stream stream_;
  CudnnHandle cudnn_;
  CublasHandle cublas_;
  CublasLtHandle cublas_lt_;  // GEMM convolutions with bias (+ReLU) in the epilogue
  DeviceBuffer acts_;         // activation arena (values + gradients), dtype
  std::shared_ptr<GpuParams> params_;
  DeviceBuffer saved_;      // per-layer state kept from forward to backward (LRN scale, pool argmax)
  DeviceBuffer workspace_;  // shared cuDNN workspace
  DeviceBuffer cublas_ws_;
  DeviceBuffer scratch_;       // per-row scratch of loss/accuracy layers (fp32)
  DeviceBuffer bias_partial_;  // fp32 partial sums of the split bias-gradient reduction
  DeviceBuffer staging_;       // channels_last: dense output / gradient of a branch convolution
  DeviceBuffer gemm_partial_;  // NCHW fp32 1x1 convolutions: per-image weight-gradient products
  DeviceBuffer fc_partial_;    // fp32 per-slice weight-gradient products of the GEMM convolutions
  DeviceBuffer cols_;         // channels-last spatial convolutions as GEMMs: im2col rows, then their gradient
  DeviceBuffer outputs_;      // fp32 scalar outputs (losses, accuracies), one per output layer
  DeviceBuffer output_sums_;  // fp64 sums of outputs_ over steps (take_output_sums)
  int n_outputs_ = 0;
  DeviceBuffer labels_;
  DeviceBuffer step_dev_;  // StepDevice (iteration + SgdStepParams)
  static constexpr int kStepSlots = 4;
  PinnedBuffer step_host_;  // kStepSlots StepDevice slots
  std::vector<Event> step_events_;
  bool step_slot_used_[kStepSlots] = {};
  std::uint64_t step_counter_ = 0;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::unique_ptr<Lane>> lanes_;    // lanes_[0]: stream_ and the members above
  std::vector<int> lane_of_;                    // per layer
  std::vector<std::vector<int>> region_lanes_;  // per plan region: its side lanes
  std::vector<Event> layer_done_;               // per layer: recorded after its backward in a region
  // backward(): events of other lanes' layers that must be done before the running layer writes
  // its input gradient. A convolution issues them just before its data gradient
  // (wait_input_grad), so its bias pass and weight gradient overlap the wait; anything else
  // before it starts.
  std::vector<cudaEvent_t> input_grad_waits_;
  const Lane* handles_bound_ = nullptr;  // the lane cudnn_ and cublas_ are bound to
  Event fork_;
  Graph graph_;
  GraphExec graph_exec_;
  bool graph_has_update_ = false;
  // Data parallelism.
  void launch_ready_buckets(int layer);  // every bucket not yet launched that is ready after `layer`
  std::vector<char> bucket_launched_;
  ncclComm_t comm_ = nullptr;
  bool reduce_f32_ = false;  // bf16 gradients widened and summed in fp32 (GradReduceOptions::sum_fp32)
  bool comm_warm_ = false;   // the first reducing step runs eagerly (NCCL connects), later ones are captured
  std::vector<GradBucket> buckets_;
  Stream comm_stream_;
  std::vector<Event> bucket_ready_;
  Event reduce_done_;
  bool time_reduce_ = false;  // record the timing events below (time_grad_reduce)
  Event t_bwd0_, t_bwd1_;
  std::vector<Event> t_ar0_, t_ar1_;
};

}  // namespace incept

// GPU backend of a planned net (gpu_net.h): arenas, per-layer dispatch, the captured step.
#include "engine/gpu_net.h"

#include <fmt/format.h>
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <thread>

#include "engine/check.h"
#include "engine/fillers.h"
#include "engine/gpu_net_layer.h"
#include "engine/graph_rewrite.h"
#include "engine/layers.h"
#include "engine/log.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/dropout_gpu.h"
#include "kernels/elementwise.h"
#include "kernels/im2col_gpu.h"
#include "kernels/layout.h"
#include "kernels/lrn_gpu.h"
#include "kernels/pool_gpu.h"
#include "kernels/softmax_gpu.h"
#include "kernels/softmax_loss_gpu.h"

namespace incept {
namespace {

using kernels::DType;
using bf16 = __nv_bfloat16;

// Calls fn.template operator()<T>() with T = float or bf16 for the dtype.
template <typename Fn>
void with_dtype(DType t, Fn&& fn) {
  if (t == DType::kF32)
    fn.template operator()<float>();
  else
    fn.template operator()<bf16>();
}

// The device copy of the per-step values: the dropout iteration and the SGD parameters.
struct StepDevice {
  std::uint64_t iteration = 0;
  kernels::SgdStepParams sgd;
};

struct NvtxRange {
  explicit NvtxRange(const std::string& name) { nvtxRangePushA(name.c_str()); }
  ~NvtxRange() { nvtxRangePop(); }
};

}  // namespace

GpuNet::GpuNet(NetPlan plan, const GpuNetOptions& options, std::shared_ptr<GpuParams> params)
    : plan_(std::move(plan)), opt_(options), esize_(kernels::dtype_size(options.dtype)) {
  if (opt_.workspace_limit == 0)
    opt_.workspace_limit = std::size_t(opt_.dtype == DType::kBF16 ? 512 : 256) << 20;
  if (opt_.round_grads_bf16 && opt_.dtype != DType::kF32)
    throw Error(fmt::format("net {}: rounding the gradients to bf16 is an fp32 experiment (the net is {})",
                            plan_.name, kernels::dtype_name(opt_.dtype)));
  if (params) {
    params->check_layout(plan_);
    if (params->dtype() != opt_.dtype || params->channels_last() != opt_.channels_last)
      throw Error(fmt::format("net {}: the shared parameter store is {} {}, the net {} {}", plan_.name,
                              kernels::dtype_name(params->dtype()), params->channels_last() ? "NHWC" : "NCHW",
                              kernels::dtype_name(opt_.dtype), opt_.channels_last ? "NHWC" : "NCHW"));
    params_ = std::move(params);
  } else {
    params_ = std::make_shared<GpuParams>(plan_, opt_.dtype, opt_.channels_last);
  }
  stream_ = make_stream();
  cudnn_ = make_cudnn();
  cublas_ = make_cublas();
  cublas_lt_ = make_cublas_lt();
  CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  cublas_ws_ = DeviceBuffer(std::size_t(32) << 20);
  CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_.data(), cublas_ws_.bytes()));

  acts_ = DeviceBuffer(std::size_t(std::max<std::int64_t>(plan_.activation_elems, 1)) * esize_);
  labels_ = DeviceBuffer(std::size_t(std::max(plan_.options.batch, 1)) * 4);
  step_dev_ = DeviceBuffer(sizeof(StepDevice));
  step_host_ = PinnedBuffer(kStepSlots * sizeof(StepDevice));
  for (int i = 0; i < kStepSlots; ++i) {
    step_host_.as<StepDevice>()[i] = StepDevice{};
    step_events_.push_back(make_event(false));
  }
  labels_.fill_bytes(0, stream_);
  step_dev_.upload(step_host_.data(), sizeof(StepDevice), stream_);

  build_layers();
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

GpuNet::~GpuNet() = default;

GpuNetOptions recommended_options(int device) {
  const int major = kernels::compute_capability(device) / 10;  // INCEPT_CC_LIMIT applies
  GpuNetOptions o;
  o.dtype = major >= 8 ? DType::kBF16 : DType::kF32;
  o.channels_last = major >= 7;
  o.tf32x3 = major >= 8;  // fp32 only: the 3xTF32 kernel needs TF32 tensor cores
  return o;
}

GpuNetOptions recommended_options(int device, DType dtype) {
  GpuNetOptions o = recommended_options(device);
  o.dtype = dtype;
  return o;
}

void* GpuNet::data() const {
  return acts_.as<char>() + plan_.blobs[plan_.data_blob].offset * esize_;
}

void GpuNet::set_input(std::span<const float> nchw) {
  const Nchw& s = plan_.blobs[plan_.data_blob].shape;
  if (std::int64_t(nchw.size()) != s.count())
    throw Error(fmt::format("set_input: {} values for an input of {}", nchw.size(), s.count()));
  std::vector<float> v(nchw.begin(), nchw.end());
  if (opt_.channels_last) v = nchw_to_nhwc(v, s.n, s.c, s.h, s.w);
  if (opt_.dtype == DType::kF32) {
    CUDA_CHECK(cudaMemcpyAsync(data(), v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  } else {
    std::vector<std::uint16_t> b(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) b[i] = kernels::f32_to_bf16_bits(v[i]);
    CUDA_CHECK(cudaMemcpyAsync(data(), b.data(), b.size() * 2, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
}

std::int64_t GpuNet::act_offset(int blob, std::int64_t nchw_offset) const {
  const BlobPlan& b = plan_.blobs[blob];
  if (!opt_.channels_last || b.root == blob) return nchw_offset;
  // The plan placed the slice at root + c0 * H * W (NCHW); channels-last it starts at root + c0.
  return nchw_offset - channel_slice_offset(b.root_channel, b.shape.h, b.shape.w, false) +
         channel_slice_offset(b.root_channel, b.shape.h, b.shape.w, true);
}

void GpuNet::build_layers() {
  char* acts = acts_.as<char>();
  const bool nhwc = opt_.channels_last;
  auto value_ptr = [&](int blob) -> void* {
    const BlobPlan& b = plan_.blobs[blob];
    return b.is_label ? nullptr : acts + act_offset(blob, b.offset) * esize_;
  };
  auto diff_ptr = [&](int blob) -> void* {
    const BlobPlan& b = plan_.blobs[blob];
    return b.diff_offset < 0 ? nullptr : acts + act_offset(blob, b.diff_offset) * esize_;
  };
  void* compute_weights = params_->weights();

  // Saved-state sizes (bytes) first, then one allocation.
  std::vector<std::size_t> saved_at(plan_.layers.size(), SIZE_MAX);
  std::size_t saved_bytes = 0, scratch_elems = 0;
  int n_outputs = 0;
  for (std::size_t l = 0; l < plan_.layers.size(); ++l) {
    const LayerPlan& lp = plan_.layers[l];
    const Nchw& in0 = plan_.blobs[lp.bottoms.empty() ? 0 : lp.bottoms[0]].shape;
    std::size_t bytes = 0;
    if (lp.kind() == LayerKind::kLRN && opt_.save_lrn_scale && !opt_.channels_last && plan_.options.training)
      bytes = std::size_t(in0.count()) * 4;
    if (lp.kind() == LayerKind::kPooling && std::get<PoolParams>(lp.params).geom.method == PoolMethod::kMax &&
        plan_.options.training)  // argmax: int32 NCHW, uint8 in-window position channels-last
      bytes = std::size_t(plan_.blobs[lp.tops[0]].shape.count()) * (opt_.channels_last ? 1 : 4);
    if (bytes) {
      saved_at[l] = saved_bytes;
      saved_bytes += (bytes + 255) / 256 * 256;
    }
    if (lp.kind() == LayerKind::kSoftmaxWithLoss || lp.kind() == LayerKind::kAccuracy) {
      scratch_elems = std::max<std::size_t>(scratch_elems, std::size_t(in0.n));
      ++n_outputs;
    }
  }
  saved_ = DeviceBuffer(std::max<std::size_t>(saved_bytes, 256));
  scratch_ = DeviceBuffer(std::max<std::size_t>(scratch_elems, 1) * 4);
  outputs_ = DeviceBuffer(std::size_t(std::max(n_outputs, 1)) * 4);
  outputs_.fill_bytes(0, stream_);
  output_sums_ = DeviceBuffer(std::size_t(std::max(n_outputs, 1)) * 8);
  output_sums_.fill_bytes(0, stream_);
  n_outputs_ = n_outputs;

  int output_at = 0;
  for (std::size_t l = 0; l < plan_.layers.size(); ++l) {
    const LayerPlan& lp = plan_.layers[l];
    auto L = std::make_unique<Layer>();
    L->plan = &lp;
    for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
      L->in_shape.push_back(plan_.blobs[lp.bottoms[i]].shape);
      L->in.push_back(value_ptr(lp.bottoms[i]));
      L->in_diff.push_back(lp.bottom_diff[i] ? diff_ptr(lp.bottoms[i]) : nullptr);
      L->accumulate.push_back(lp.accumulate[i]);
    }
    for (int t : lp.tops) {
      L->out_shape.push_back(plan_.blobs[t].shape);
      L->out.push_back(value_ptr(t));
      L->out_diff.push_back(diff_ptr(t));
    }
    for (int p : lp.param_ids) {
      const std::int64_t off = plan_.params[p].offset;
      L->w.push_back(static_cast<char*>(compute_weights) + off * esize_);
      L->w_diff.push_back(static_cast<char*>(params_->grads()) + off * esize_);
    }
    if (saved_at[l] != SIZE_MAX) L->saved = saved_.as<char>() + saved_at[l];
    if (lp.kind() == LayerKind::kSoftmaxWithLoss || lp.kind() == LayerKind::kAccuracy) {
      L->scratch = scratch_.as<float>();
      L->output = outputs_.as<float>() + output_at++;
    }
    if (lp.kind() == LayerKind::kSoftmax &&
        (plan_.options.training || L->in_shape[0].h * L->in_shape[0].w != 1 || !L->in_shape[0].dense()))
      throw Error(
          fmt::format("layer {}: Softmax runs on the GPU forward only, on dense classifier outputs "
                      "(H = W = 1)",
                      lp.name));
    layers_.push_back(std::move(L));
  }

  // Library plans: cuDNN convolutions (algorithms measured now) and cuBLAS inner products.
  const std::size_t probe_ws_bytes = opt_.workspace_limit;
  DeviceBuffer probe_ws(probe_ws_bytes);
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = *layers_[l];
    const LayerPlan& lp = *L.plan;
    if (lp.kind() == LayerKind::kConvolution) {
      plan_conv(l, probe_ws.data(), probe_ws_bytes);
    } else if (lp.kind() == LayerKind::kInnerProduct) {
      const Nchw& x = L.in_shape[0];
      if (!x.dense()) throw Error(fmt::format("layer {}: InnerProduct needs a dense input", lp.name));
      const FcGeom& g = std::get<FcParams>(lp.params).geom;
      L.fc = std::make_unique<GpuFc>(FcShape{x.n, int(x.image()), L.out_shape[0].c}, opt_.dtype,
                                     opt_.allow_tf32, opt_.tf32x3, opt_.tf32x3_all_shapes);
      (void)g;
    }
  }
  // Elementwise kernels address NCHW planes: fine for a dense tensor in either layout, not
  // for an NHWC channel slice (a ReLU folded into its convolution never runs on its own).
  if (nhwc)
    for (const auto& L : layers_) {
      const LayerKind k = L->plan->kind();
      const Nchw& x = L->in_shape.empty() ? Nchw{} : L->in_shape[0];
      if (!L->skip && (k == LayerKind::kReLU || k == LayerKind::kDropout) && !x.dense() && x.h * x.w > 1)
        throw Error(fmt::format("layer {}: {} of a channel slice is not supported channels-last",
                                L->plan->name, kind_name(k)));
    }
  probe_ws = DeviceBuffer();
  if (nhwc && plan_.options.training) fold_relu_masks(opt_.lrn_relu_mask, opt_.pool_relu_mask);
  // Workspaces, staging and partial-sum buffers, per lane (the main lane's are members).
  plan_lanes();

  // Fused epilogues for the GEMM convolutions (bias + the folded ReLU), within their lane's
  // cuBLAS workspace.
  if (opt_.gemm_epilogue)
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const auto& L = layers_[l];
      if (L->fc && L->plan->kind() == LayerKind::kConvolution &&
          std::get<ConvParams>(L->plan->params).geom.bias)
        L->fc->prepare_fused_forward(cublas_lt_, L->w[1], L->fused_relu,
                                     lanes_[lane_of_[l]]->cublas_ws_bytes);
    }

  acts_.fill_bytes(0, stream_);
}

// ---- parameters -------------------------------------------------------------------------

void GpuNet::set_params(std::span<const float> host) {
  params_->set_params(host, stream_);
}

void GpuNet::get_params(std::span<float> host) const {
  params_->get_params(host, stream_);
}

void GpuNet::get_grads(std::span<float> host) const {
  params_->get_grads(host, stream_);
}

void GpuNet::get_momentum(std::span<float> host) const {
  params_->get_momentum(host, stream_);
}

void GpuNet::set_momentum(std::span<const float> host) {
  params_->set_momentum(host, stream_);
}

void GpuNet::init_params(std::uint64_t seed) {
  std::vector<float> host(plan_.param_elems);
  fill_params(plan_, seed, host.data());
  set_params(host);
  zero_momentum();
}

void GpuNet::zero_momentum() {
  params_->zero_momentum(stream_);
}

// ---- the step -----------------------------------------------------------------------------

void GpuNet::set_step_values(const StepValues& v) {
  // A ring of pinned slots: a slot is rewritten only after the copy out of it (kStepSlots
  // steps ago) has run, so the host normally never waits and can run ahead of the GPU.
  const int slot = int(step_counter_++ % kStepSlots);
  if (step_slot_used_[slot]) CUDA_CHECK(cudaEventSynchronize(step_events_[slot]));
  StepDevice& s = step_host_.as<StepDevice>()[slot];
  s.iteration = v.iteration;
  s.sgd.lr = v.lr;
  s.sgd.momentum = v.momentum;
  s.sgd.weight_decay = v.weight_decay;
  s.sgd.grad_scale = v.grad_scale;
  CUDA_CHECK(cudaMemcpyAsync(step_dev_.data(), &s, sizeof(StepDevice), cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaEventRecord(step_events_[slot], stream_));
  step_slot_used_[slot] = true;
}

void GpuNet::zero_grads() {
  params_->zero_grads(stream_);
}

void GpuNet::forward_layer(int l) {  // alone: on its lane, ordered with the main stream
  const BranchRegion* r = lanes_.size() > 1 ? plan_.region_of(l) : nullptr;
  if (r) fork(*r);
  run_forward(l, *lanes_[lane_of_[l]]);
  if (r) join(*r);
}

void GpuNet::backward_layer(int l) {
  const BranchRegion* r = lanes_.size() > 1 ? plan_.region_of(l) : nullptr;
  if (r) fork(*r);
  run_backward(l, *lanes_[lane_of_[l]]);
  if (r) join(*r);
}

void GpuNet::forward() {
  const bool lanes = lanes_.size() > 1;
  for (int l = 0; l < int(layers_.size()); ++l) {
    const BranchRegion* r = lanes ? plan_.region_of(l) : nullptr;
    if (r && l == r->first) fork(*r);
    if (r && l == r->last) join(*r);  // the Concat (main lane) and what follows read every branch
    run_forward(l, *lanes_[lane_of_[l]]);
  }
}

void GpuNet::backward() {
  if (!plan_.options.training) throw Error(fmt::format("net {}: planned without gradients", plan_.name));
  if (time_reduce_) CUDA_CHECK(cudaEventRecord(t_bwd0_, stream_));
  if (comm_) bucket_launched_.assign(buckets_.size(), 0);
  // In a region, a layer waits for the last layer of another lane that wrote a gradient it reads
  // or writes (the fork blob's gradient, which every branch adds to: the one-stream order).
  std::vector<int> last_writer(plan_.blobs.size(), -1);
  const bool lanes = lanes_.size() > 1;
  for (int l = int(layers_.size()) - 1; l >= 0; --l) {
    const BranchRegion* r = lanes ? plan_.region_of(l) : nullptr;
    const Layer& L = *layers_[l];
    const Lane& lane = *lanes_[lane_of_[l]];
    if (r && l == r->last) fork(*r);
    if (r) {
      const LayerPlan& lp = *L.plan;
      auto other_lane = [&](int blob) {
        const int w = last_writer[blob];
        return w >= 0 && lane_of_[w] != lane_of_[l] ? w : -1;
      };
      for (int t : lp.tops)
        if (const int w = other_lane(t); w >= 0)
          CUDA_CHECK(cudaStreamWaitEvent(lane.stream, layer_done_[w], 0));
      // The input gradient (the fork blob's, which the branches add to in the one-stream order):
      // a convolution waits just before its data gradient (conv_backward), unless the layer
      // zeroes a gradient first.
      for (std::size_t i = 0; i < lp.bottoms.size(); ++i)
        if (const int w = lp.bottom_diff[i] ? other_lane(lp.bottoms[i]) : -1; w >= 0)
          input_grad_waits_.push_back(layer_done_[w]);
      if (lp.kind() != LayerKind::kConvolution || !lp.zero_diffs.empty()) wait_input_grad(lane);
    }
    run_backward(l, lane);
    wait_input_grad(lane);  // a layer that wrote no input gradient
    if (r) {
      const LayerPlan& lp = *L.plan;
      CUDA_CHECK(cudaEventRecord(layer_done_[l], lane.stream));
      for (int t : lp.tops) last_writer[t] = l;
      for (std::size_t i = 0; i < lp.bottoms.size(); ++i)
        if (lp.bottom_diff[i]) last_writer[lp.bottoms[i]] = l;
    }
    if (r && l == r->first) join(*r);
    if (comm_ && !(r && l != r->first)) launch_ready_buckets(l);
  }
  if (time_reduce_) CUDA_CHECK(cudaEventRecord(t_bwd1_, stream_));
  if (comm_) {  // update() reads the sums
    CUDA_CHECK(cudaEventRecord(reduce_done_, comm_stream_));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, reduce_done_, 0));
  }
}

namespace {
// The communicators are non-blocking (engine/nccl_comm.h): a call may return ncclInProgress
// while NCCL enqueues; wait (bounded) until it has.
void nccl_enqueued(ncclResult_t r, ncclComm_t comm, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (r == ncclInProgress) {
    if (std::chrono::steady_clock::now() > deadline) {
      r = ncclSystemError;
      break;
    }
    std::this_thread::yield();
    ncclResult_t s = ncclSuccess;
    ncclCommGetAsyncError(comm, &s);
    r = s;
  }
  if (r != ncclSuccess) check_failed("NCCL", what, __FILE__, __LINE__, ncclGetErrorString(r));
}
}  // namespace

void GpuNet::set_grad_reduce(const GradReduceOptions& o) {
  if (graph_exec_) throw Error("set_grad_reduce: call it before the first captured step");
  comm_ = o.comm;
  buckets_.clear();
  if (!comm_) return;
  reduce_f32_ = opt_.dtype == DType::kBF16 && o.sum_fp32;
  if (reduce_f32_) params_->enable_fp32_grad_sum();
  buckets_ = plan_grad_buckets(plan_, reduce_f32_ ? 4 : esize_, o.first_bucket_bytes, o.bucket_bytes);
  comm_stream_ = make_stream();
  bucket_ready_.clear();
  for (std::size_t b = 0; b < buckets_.size(); ++b) bucket_ready_.push_back(make_event(false));
  reduce_done_ = make_event(false);
  t_bwd0_ = make_event();
  t_bwd1_ = make_event();
  t_ar0_.clear();
  t_ar1_.clear();
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    t_ar0_.push_back(make_event());
    t_ar1_.push_back(make_event());
  }
}

void GpuNet::launch_ready_buckets(int layer) {
  const bool f32 = opt_.dtype == DType::kF32 || reduce_f32_;
  const ncclDataType_t type = f32 ? ncclFloat32 : ncclBfloat16;
  if (bucket_launched_.size() != buckets_.size()) bucket_launched_.assign(buckets_.size(), 0);
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    const GradBucket& k = buckets_[b];
    if (k.ready_after < layer || bucket_launched_[b]) continue;
    bucket_launched_[b] = 1;
    CUDA_CHECK(cudaEventRecord(bucket_ready_[b], stream_));
    CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, bucket_ready_[b], 0));
    if (time_reduce_) CUDA_CHECK(cudaEventRecord(t_ar0_[b], comm_stream_));
    if (reduce_f32_) params_->widen_grads(k.lo, k.hi, comm_stream_);
    void* p = reduce_f32_ ? static_cast<void*>(params_->grad_sum() + k.lo)
                          : static_cast<char*>(params_->grads()) + std::size_t(k.lo) * esize_;
    nccl_enqueued(ncclAllReduce(p, p, std::size_t(k.elems()), type, ncclSum, comm_, comm_stream_), comm_,
                  "ncclAllReduce (gradient bucket)");
    if (time_reduce_) CUDA_CHECK(cudaEventRecord(t_ar1_[b], comm_stream_));
  }
}

ReduceTiming GpuNet::time_grad_reduce(const StepValues& v, int iters,
                                      const std::function<void(bool enqueued)>& guard) {
  ReduceTiming r;
  if (!comm_) return r;
  r.buckets = int(buckets_.size());
  r.grad_bytes = double(plan_.param_elems) * (reduce_f32_ ? 4.0 : double(esize_));
  std::vector<float> bwd, span, busy, exposed;
  time_reduce_ = true;
  for (int i = 0; i < iters; ++i) {
    if (guard) guard(false);
    train_step(v, false, false);  // no update: timing leaves the weights as they are
    if (guard) guard(true);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    float ms = 0, b = 0, tot = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t_bwd0_, t_bwd1_));
    bwd.push_back(ms);
    for (std::size_t k = 0; k < buckets_.size(); ++k) {
      CUDA_CHECK(cudaEventElapsedTime(&b, t_ar0_[k], t_ar1_[k]));
      tot += b;
    }
    busy.push_back(tot);
    CUDA_CHECK(cudaEventElapsedTime(&ms, t_ar0_.front(), t_ar1_.back()));
    span.push_back(ms);
    CUDA_CHECK(cudaEventElapsedTime(&ms, t_bwd1_, t_ar1_.back()));
    exposed.push_back(std::max(ms, 0.f));
  }
  time_reduce_ = false;
  auto median = [](std::vector<float> x) {
    std::nth_element(x.begin(), x.begin() + x.size() / 2, x.end());
    return x[x.size() / 2];
  };
  r.backward_ms = median(bwd);
  r.allreduce_ms = median(span);
  r.allreduce_busy_ms = median(busy);
  r.exposed_ms = median(exposed);
  return r;
}

void GpuNet::update() {
  if (opt_.round_grads_bf16)
    kernels::round_to_bf16(params_->grad_bytes() / 4, static_cast<float*>(params_->grads()), stream_);
  params_->update(
      reinterpret_cast<const kernels::SgdStepParams*>(step_dev_.as<char>() + offsetof(StepDevice, sgd)),
      stream_);
}

void GpuNet::enqueue_step(bool do_update) {
  zero_grads();
  forward();
  backward();
  if (do_update) update();
  accumulate_outputs(1.0);
}

void GpuNet::accumulate_outputs(double weight) {
  kernels::accumulate(n_outputs_, outputs_.as<float>(), weight, output_sums_.as<double>(), stream_);
}

std::vector<std::pair<std::string, double>> GpuNet::take_output_sums() {
  std::vector<double> host(std::size_t(std::max(n_outputs_, 1)));
  output_sums_.download(host.data(), host.size() * 8, stream_);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  output_sums_.fill_bytes(0, stream_);
  std::vector<std::pair<std::string, double>> out;
  for (const auto& L : layers_)
    if (L->output)
      out.emplace_back(plan_.blobs[L->plan->tops[0]].name, host[L->output - outputs_.as<float>()]);
  return out;
}

void GpuNet::train_step(const StepValues& v, bool graph, bool do_update) {
  set_step_values(v);
  if (comm_ && !comm_warm_) {  // NCCL sets up its connections on first use: not inside a capture
    comm_warm_ = true;
    graph = false;
  }
  if (!graph) {
    enqueue_step(do_update);
    return;
  }
  if (!graph_exec_ || graph_has_update_ != do_update) {
    cudaGraph_t g = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_step(do_update);
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    graph_ = Graph(g);
    if (opt_.memset_kernels) memset_nodes_to_kernels(g);
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph_, 0));
    graph_exec_ = GraphExec(exec);
    graph_has_update_ = do_update;
  }
  CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
}

void GpuNet::forward_step(const StepValues& v) {
  set_step_values(v);
  forward();
}

// ---- per-layer dispatch ---------------------------------------------------------------------

void GpuNet::run_forward(int l, const Lane& R) {
  Layer& L = *layers_[l];
  if (L.skip) return;
  bind_handles(R);
  const LayerPlan& lp = *L.plan;
  NvtxRange range(lp.name);
  const auto* step = reinterpret_cast<const std::uint64_t*>(step_dev_.data());
  with_dtype(opt_.dtype, [&]<typename T>() {
    auto in = [&](int i) { return static_cast<const T*>(L.in[i]); };
    auto out = [&](int i) { return static_cast<T*>(L.out[i]); };
    switch (lp.kind()) {
      case LayerKind::kConvolution:
        conv_forward<T>(L, R);
        break;
      case LayerKind::kReLU:
        kernels::relu_fwd<T>(L.out_shape[0], in(0), out(0), R.stream);
        break;
      case LayerKind::kPooling:
        if (opt_.channels_last)
          kernels::pool_fwd_nhwc<T>(L.in_shape[0], in(0), std::get<PoolParams>(lp.params).geom,
                                    L.out_shape[0], out(0), static_cast<std::uint8_t*>(L.saved), R.stream,
                                    L.relu_mask);
        else
          kernels::pool_fwd<T>(L.in_shape[0], in(0), std::get<PoolParams>(lp.params).geom, L.out_shape[0],
                               out(0), static_cast<std::int32_t*>(L.saved), R.stream);
        break;
      case LayerKind::kLRN:
        (opt_.channels_last ? kernels::lrn_fwd_nhwc<T>
                            : kernels::lrn_fwd<T>)(L.in_shape[0], in(0), std::get<LrnParams>(lp.params).geom,
                                                   L.out_shape[0], out(0), static_cast<float*>(L.saved),
                                                   R.stream);
        break;
      case LayerKind::kConcat:
        break;  // bottoms are channel slices of the top: nothing to do
      case LayerKind::kInnerProduct: {
        const bool bias = std::get<FcParams>(lp.params).geom.bias;
        L.fc->forward(R.cublas, L.in[0], L.w[0], bias ? L.w[1] : nullptr, false, L.out[0]);
        break;
      }
      case LayerKind::kDropout: {
        if (!plan_.options.training) {
          if (L.out[0] != L.in[0])
            CUDA_CHECK(cudaMemcpyAsync(L.out[0], L.in[0], L.in_shape[0].count() * sizeof(T),
                                       cudaMemcpyDeviceToDevice, R.stream));
          break;
        }
        ref::DropoutKey key{opt_.dropout_seed, 0, std::uint32_t(l), opt_.dropout_first_sample};
        kernels::dropout_fwd<T>(L.in_shape[0], in(0), std::get<DropoutParams>(lp.params).ratio, key, step,
                                out(0), R.stream);
        break;
      }
      case LayerKind::kSoftmaxWithLoss: {
        const Nchw& s = L.in_shape[0];
        kernels::softmax_xent_fwd<T>(s.n, int(s.image()), in(0), labels(), 1.f, L.scratch, L.output, nullptr,
                                     R.stream);
        break;
      }
      case LayerKind::kAccuracy: {
        const Nchw& s = L.in_shape[0];
        kernels::accuracy_fwd<T>(s.n, int(s.image()), in(0), labels(),
                                 std::get<AccuracyParams>(lp.params).top_k, L.scratch, L.output, R.stream);
        break;
      }
      case LayerKind::kSoftmax:
        kernels::softmax_fwd<T>(L.in_shape[0].n, L.in_shape[0].c, in(0), out(0), R.stream);
        break;
    }
  });
}

void GpuNet::wait_input_grad(const Lane& R) {
  for (cudaEvent_t e : input_grad_waits_) CUDA_CHECK(cudaStreamWaitEvent(R.stream, e, 0));
  input_grad_waits_.clear();
}

void GpuNet::run_backward(int l, const Lane& R) {
  Layer& L = *layers_[l];
  const LayerPlan& lp = *L.plan;
  for (int r : lp.zero_diffs) {
    const BlobPlan& b = plan_.blobs[r];
    CUDA_CHECK(
        cudaMemsetAsync(acts_.as<char>() + b.diff_offset * esize_, 0, b.shape.count() * esize_, R.stream));
  }
  if (!lp.run_backward || L.skip) return;
  bind_handles(R);
  NvtxRange range(lp.name + " bwd");
  const auto* step = reinterpret_cast<const std::uint64_t*>(step_dev_.data());
  with_dtype(opt_.dtype, [&]<typename T>() {
    auto in = [&](int i) { return static_cast<const T*>(L.in[i]); };
    auto dout = [&](int i) { return static_cast<const T*>(L.out_diff[i]); };
    auto din = [&](int i) { return static_cast<T*>(L.in_diff[i]); };
    switch (lp.kind()) {
      case LayerKind::kConvolution:
        conv_backward<T>(L, R);
        break;
      case LayerKind::kReLU:
        if (L.in_diff[0])
          kernels::relu_bwd<T>(L.in_shape[0], static_cast<const T*>(L.out[0]), dout(0), din(0),
                               L.accumulate[0], R.stream);
        break;
      case LayerKind::kPooling:
        if (L.in_diff[0] && opt_.channels_last)
          kernels::pool_bwd_nhwc<T>(L.in_shape[0], std::get<PoolParams>(lp.params).geom, L.out_shape[0],
                                    dout(0), static_cast<const std::uint8_t*>(L.saved), din(0),
                                    L.accumulate[0], R.stream);
        else if (L.in_diff[0])
          kernels::pool_bwd<T>(L.in_shape[0], std::get<PoolParams>(lp.params).geom, L.out_shape[0], dout(0),
                               static_cast<const std::int32_t*>(L.saved), din(0), L.accumulate[0], R.stream);
        break;
      case LayerKind::kLRN:
        if (L.in_diff[0]) {
          if (opt_.channels_last)
            kernels::lrn_bwd_nhwc<T>(L.in_shape[0], in(0), L.out_shape[0], static_cast<const T*>(L.out[0]),
                                     dout(0), static_cast<const float*>(L.saved),
                                     std::get<LrnParams>(lp.params).geom, din(0), L.accumulate[0], R.stream,
                                     L.relu_mask);
          else
            kernels::lrn_bwd<T>(L.in_shape[0], in(0), L.out_shape[0], static_cast<const T*>(L.out[0]),
                                dout(0), static_cast<const float*>(L.saved),
                                std::get<LrnParams>(lp.params).geom, din(0), L.accumulate[0], R.stream);
        }
        break;
      case LayerKind::kConcat:
        break;  // bottoms' gradients are slices of the top's gradient
      case LayerKind::kInnerProduct: {
        const bool bias = std::get<FcParams>(lp.params).geom.bias;
        L.fc->backward_filter(R.cublas, L.in[0], L.out_diff[0], L.w_diff[0], bias ? L.w_diff[1] : nullptr);
        if (L.in_diff[0]) L.fc->backward_data(R.cublas, L.out_diff[0], L.w[0], L.in_diff[0], L.accumulate[0]);
        break;
      }
      case LayerKind::kDropout:
        if (L.in_diff[0]) {
          ref::DropoutKey key{opt_.dropout_seed, 0, std::uint32_t(l), opt_.dropout_first_sample};
          kernels::dropout_bwd<T>(L.in_shape[0], dout(0), std::get<DropoutParams>(lp.params).ratio, key, step,
                                  din(0), L.accumulate[0], R.stream);
        }
        break;
      case LayerKind::kSoftmaxWithLoss: {
        if (!L.in_diff[0]) break;
        if (L.accumulate[0])
          throw Error(fmt::format("layer {}: a loss input with several gradient consumers is not supported",
                                  lp.name));
        const Nchw& s = L.in_shape[0];
        kernels::softmax_xent_fwd<T>(s.n, int(s.image()), in(0), labels(),
                                     std::get<SoftmaxLossParams>(lp.params).loss_weight, L.scratch, L.output,
                                     din(0), R.stream);
        break;
      }
      case LayerKind::kAccuracy:
      case LayerKind::kSoftmax:
        break;
    }
  });
}

// ---- reading results ------------------------------------------------------------------------

float GpuNet::output(const std::string& top) const {
  for (const auto& [name, v] : scalar_outputs())
    if (name == top) return v;
  throw Error(fmt::format("net {}: no scalar output named '{}'", plan_.name, top));
}

std::vector<std::pair<std::string, float>> GpuNet::scalar_outputs() const {
  std::vector<float> host(outputs_.bytes() / 4);
  outputs_.download(host.data(), outputs_.bytes(), stream_);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<std::pair<std::string, float>> out;
  for (const auto& L : layers_)
    if (L->output)
      out.emplace_back(plan_.blobs[L->plan->tops[0]].name, host[L->output - outputs_.as<float>()]);
  return out;
}

namespace {
// Downloads `n` elements of dtype t at device pointer p, as fp32.
std::vector<float> download_as_f32(const void* p, std::size_t n, DType t, cudaStream_t s) {
  std::vector<float> out(n);
  if (t == DType::kF32) {
    CUDA_CHECK(cudaMemcpyAsync(out.data(), p, n * 4, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  } else {
    std::vector<std::uint16_t> raw(n);
    CUDA_CHECK(cudaMemcpyAsync(raw.data(), p, n * 2, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    for (std::size_t i = 0; i < n; ++i) out[i] = kernels::bf16_bits_to_f32(raw[i]);
  }
  return out;
}

// Calls f(i, offset) for every element of a strided NCHW or NHWC view: i counts in dense NCHW
// order, offset is the element's place in the view's memory.
template <typename F>
void for_each_in_view(const Nchw& s, bool nhwc, F&& f) {
  std::size_t i = 0;
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int h = 0; h < s.h; ++h)
        for (int w = 0; w < s.w; ++w) f(i++, nhwc ? nhwc_offset(s, n, c, h, w) : nchw_offset(s, n, c, h, w));
}

// Elements from a view's first to its last (the span a copy of the view must cover).
std::size_t view_span(const Nchw& s, bool nhwc) {
  if (s.count() == 0) return 0;
  return std::size_t((nhwc ? nhwc_offset(s, s.n - 1, s.c - 1, s.h - 1, s.w - 1)
                           : nchw_offset(s, s.n - 1, s.c - 1, s.h - 1, s.w - 1)) +
                     1);
}

// Gathers a strided NCHW or NHWC view into a dense NCHW fp32 vector.
std::vector<float> gather_view(const char* base, const Nchw& s, bool nhwc, DType t, cudaStream_t st) {
  if (s.count() == 0) return {};
  const auto all = download_as_f32(base, view_span(s, nhwc), t, st);
  std::vector<float> out(std::size_t(s.count()));
  for_each_in_view(s, nhwc, [&](std::size_t i, std::int64_t at) { out[i] = all[at]; });
  return out;
}

// Writes dense NCHW fp32 values into a strided NCHW or NHWC view of dtype t (read, modify,
// write of the span the view covers, so the elements between its rows keep their values).
void scatter_view(char* base, const Nchw& s, bool nhwc, DType t, std::span<const float> nchw,
                  cudaStream_t st) {
  if (std::int64_t(nchw.size()) != s.count())
    throw Error(fmt::format("set_blob: {} values for a blob of {}", nchw.size(), s.count()));
  if (s.count() == 0) return;
  const std::size_t es = kernels::dtype_size(t);
  std::vector<char> raw(view_span(s, nhwc) * es);
  CUDA_CHECK(cudaMemcpyAsync(raw.data(), base, raw.size(), cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaStreamSynchronize(st));
  for_each_in_view(s, nhwc, [&](std::size_t i, std::int64_t at) {
    if (t == DType::kF32) {
      std::memcpy(raw.data() + at * 4, &nchw[i], 4);
    } else {
      const std::uint16_t b = kernels::f32_to_bf16_bits(nchw[i]);
      std::memcpy(raw.data() + at * 2, &b, 2);
    }
  });
  CUDA_CHECK(cudaMemcpyAsync(base, raw.data(), raw.size(), cudaMemcpyHostToDevice, st));
  CUDA_CHECK(cudaStreamSynchronize(st));
}
}  // namespace

std::vector<float> GpuNet::blob_data(int blob) const {
  const BlobPlan& b = plan_.blobs[blob];
  if (b.is_label) throw Error("blob_data: labels are int32");
  return gather_view(acts_.as<char>() + act_offset(blob, b.offset) * esize_, b.shape, opt_.channels_last,
                     opt_.dtype, stream_);
}

std::vector<float> GpuNet::blob_diff(int blob) const {
  const BlobPlan& b = plan_.blobs[blob];
  if (b.diff_offset < 0) return {};
  return gather_view(acts_.as<char>() + act_offset(blob, b.diff_offset) * esize_, b.shape, opt_.channels_last,
                     opt_.dtype, stream_);
}

void GpuNet::set_blob_data(int blob, std::span<const float> nchw) {
  const BlobPlan& b = plan_.blobs[blob];
  if (b.is_label) throw Error("set_blob_data: labels are int32 (labels())");
  scatter_view(acts_.as<char>() + act_offset(blob, b.offset) * esize_, b.shape, opt_.channels_last,
               opt_.dtype, nchw, stream_);
}

void GpuNet::set_blob_diff(int blob, std::span<const float> nchw) {
  const BlobPlan& b = plan_.blobs[blob];
  if (b.diff_offset < 0) throw Error(fmt::format("set_blob_diff: blob {} has no gradient", b.name));
  scatter_view(acts_.as<char>() + act_offset(blob, b.diff_offset) * esize_, b.shape, opt_.channels_last,
               opt_.dtype, nchw, stream_);
}

bool GpuNet::relu_folded(int l) const {
  return layers_[l]->skip;
}

bool GpuNet::relu_mask_left_to_consumer(int l) const {
  return layers_[l]->relu_masked_by_consumer;
}

bool GpuNet::applies_relu_mask(int l) const {
  return layers_[l]->relu_mask;
}

// ---- reports ------------------------------------------------------------------------------------

std::vector<LayerTime> GpuNet::time_layers(int iters) {
  const int n = int(layers_.size());
  std::vector<std::vector<float>> fwd(n), bwd(n);
  std::vector<Event> ev;
  for (int i = 0; i < 2 * n + 2; ++i) ev.push_back(make_event());
  for (int it = 0; it < iters; ++it) {
    zero_grads();
    for (int l = 0; l < n; ++l) {
      CUDA_CHECK(cudaEventRecord(ev[l], stream_));
      forward_layer(l);
    }
    CUDA_CHECK(cudaEventRecord(ev[n], stream_));
    for (int l = n - 1; l >= 0; --l) {
      CUDA_CHECK(cudaEventRecord(ev[n + 1 + (n - 1 - l)], stream_));
      backward_layer(l);
    }
    CUDA_CHECK(cudaEventRecord(ev[2 * n + 1], stream_));
    CUDA_CHECK(cudaEventSynchronize(ev[2 * n + 1]));
    for (int l = 0; l < n; ++l) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, ev[l], ev[l + 1]));
      fwd[l].push_back(ms);
      const int b = n + 1 + (n - 1 - l);
      CUDA_CHECK(cudaEventElapsedTime(&ms, ev[b], ev[b + 1]));
      bwd[l].push_back(ms);
    }
  }
  auto median = [](std::vector<float> v) {
    if (v.empty()) return 0.f;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  std::vector<LayerTime> out;
  for (int l = 0; l < n; ++l)
    out.push_back({plan_.layers[l].name, kind_name(plan_.layers[l].kind()), median(fwd[l]), median(bwd[l])});
  return out;
}

std::size_t GpuNet::device_bytes() const {
  return acts_.bytes() + params_->device_bytes() + saved_.bytes() + workspace_.bytes() + cublas_ws_.bytes() +
         scratch_.bytes() + outputs_.bytes() + bias_partial_.bytes() + staging_.bytes() + im2col_bytes() +
         gemm_partial_.bytes() + fc_partial_.bytes() + lanes_bytes();
}

std::size_t GpuNet::im2col_bytes() const {
  std::size_t b = 0;
  for (const auto& L : layers_)
    b += L->cols.bytes() + L->wpad.bytes() + L->dwpad.bytes() + L->few_partial.bytes();
  return b + cols_.bytes();
}

std::string GpuNet::memory_report() const {
  auto mib = [](std::size_t b) { return double(b) / (1 << 20); };
  const std::size_t pe = std::size_t(plan_.param_elems);
  return fmt::format(
      "activations {:.1f} MiB ({}), params {:.1f} MiB fp32 master{}, grads {:.1f} MiB, momentum {:.1f} MiB, "
      "saved state {:.1f} MiB, cuDNN workspace {:.1f} MiB, cuBLAS workspace {:.1f} MiB{}{}{}{}; total {:.1f} "
      "MiB",
      mib(acts_.bytes()),
      fmt::format("{} {}", kernels::dtype_name(opt_.dtype), opt_.channels_last ? "NHWC" : "NCHW"),
      mib(pe * 4),
      opt_.dtype == DType::kBF16 ? fmt::format(" + {:.1f} MiB bf16 copy", mib(pe * 2)) : std::string(),
      mib(params_->grad_bytes()), mib(pe * 4), mib(saved_.bytes()), mib(workspace_.bytes()),
      mib(cublas_ws_.bytes()),
      staging_.bytes() ? fmt::format(", branch staging {:.1f} MiB", mib(staging_.bytes())) : std::string(),
      im2col_bytes() ? fmt::format(", im2col rows / Winograd workspace / conv1 partial sums {:.1f} MiB",
                                   mib(im2col_bytes()))
                     : std::string(),
      gemm_partial_.bytes() ? fmt::format(", 1x1 wgrad partials {:.1f} MiB", mib(gemm_partial_.bytes()))
                            : std::string(),
      lanes_.size() > 1
          ? fmt::format(", {} branch lanes' scratch {:.1f} MiB", lanes_.size() - 1, mib(lanes_bytes()))
          : std::string(),
      mib(device_bytes()));
}

int GpuNet::winograd_layers() const {
  return int(
      std::count_if(layers_.begin(), layers_.end(), [](const auto& L) { return L->winograd != nullptr; }));
}

std::vector<std::string> GpuNet::algorithm_report() const {
  std::vector<std::string> out;
  for (const auto& L : layers_) {
    if (L->conv) out.push_back(fmt::format("{}: {}", L->plan->name, L->conv->describe()));
    if (L->few_channels)
      out.push_back(L->plan->name + (opt_.dtype == DType::kF32
                                         ? ": direct fp32 FMA convolution (kernels/conv_few_fp32)"
                                         : ": implicit GEMM (kernels/conv_few_channels)"));
    if (L->winograd)
      out.push_back(fmt::format(
          "{}: Winograd F(2x2,3x3) + strict cuBLAS GEMMs, {} image{} per chunk{}{}, weight gradient in {} "
          "parts",
          L->plan->name, L->chunk_images, L->chunk_images > 1 ? "s" : "",
          L->winograd_tail ? fmt::format(" and {} more", L->in_shape[0].n % L->chunk_images) : std::string(),
          L->winograd_two_streams ? " on two streams" : "", L->winograd->weight_grad_parts()));
    if (L->spatial_gemm)
      out.push_back(fmt::format(
          "{}: im2col rows of {} + {}, {} image{} per chunk, rows {}", L->plan->name, L->fc->shape().k,
          !L->fc->tf32x3()                  ? "cuBLAS GEMM"
          : L->cols.bytes() || L->im2col_ld ? "3xTF32 GEMM (cuBLAS for shapes it does not take)"
          : L->wflip.bytes()
              ? "3xTF32 GEMM (cuBLAS for shapes it does not take; forward and weight gradient "
                "read the rows in place; data gradient: flipped filters on dy's rows)"
              : "3xTF32 GEMM (cuBLAS for shapes it does not take; forward and weight gradient read "
                "the rows in place)",
          L->chunk_images, L->chunk_images > 1 ? "s" : "",
          L->cols.bytes() ? "kept for the weight gradient" : "in the lane's buffer"));
  }
  return out;
}

}  // namespace incept

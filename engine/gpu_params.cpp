// The parameter store of one GPU replica (gpu_params.h).
#include "engine/gpu_params.h"

#include <fmt/format.h>

#include <algorithm>

#include "engine/check.h"
#include "kernels/elementwise.h"
#include "kernels/layout.h"

namespace incept {

using kernels::DType;

GpuParams::GpuParams(const NetPlan& plan, DType dtype, bool channels_last)
    : dtype_(dtype), channels_last_(channels_last), elems_(plan.param_elems), layout_(plan.params) {
  const std::size_t pe = std::size_t(std::max<std::int64_t>(elems_, 1));
  master_ = DeviceBuffer(pe * 4);
  grads_ = DeviceBuffer(pe * kernels::dtype_size(dtype));
  history_ = DeviceBuffer(pe * 4);
  if (dtype == DType::kBF16) weights_lp_ = DeviceBuffer(pe * 2);
  master_.fill_bytes(0);
  grads_.fill_bytes(0);
  history_.fill_bytes(0);
  if (weights_lp_.bytes()) weights_lp_.fill_bytes(0);

  std::vector<kernels::SgdSegment> segs;
  for (const ParamPlan& p : layout_) segs.push_back({p.offset, p.count, p.lr_mult, p.decay_mult});
  if (int(segs.size()) > kernels::kSgdMaxSegments)
    throw Error(fmt::format("net {}: {} parameter blobs, the SGD kernel takes at most {}", plan.name,
                            segs.size(), kernels::kSgdMaxSegments));
  n_segments_ = int(segs.size());
  segments_ = DeviceBuffer(std::max<std::size_t>(segs.size(), 1) * sizeof(kernels::SgdSegment));
  if (!segs.empty()) segments_.upload(segs.data(), segs.size() * sizeof(kernels::SgdSegment));

  // Device layout: channels-last filters are KRSC, and an inner product reading an NHWC input
  // with H * W > 1 sees its weights [M, C, H, W] as [M, H, W, C].
  if (channels_last)
    for (const LayerPlan& lp : plan.layers) {
      if (lp.param_ids.empty()) continue;
      const ParamPlan& w = plan.params[lp.param_ids[0]];
      if (lp.kind() == LayerKind::kConvolution && w.shape.size() == 4 && w.shape[2] * w.shape[3] > 1)
        permutes_.push_back({w.offset, w.shape[0], w.shape[1], w.shape[2] * w.shape[3]});
      const Nchw& x = plan.blobs[lp.bottoms[0]].shape;
      if (lp.kind() == LayerKind::kInnerProduct && x.h * x.w > 1)
        permutes_.push_back({w.offset, int(w.count / x.image()), x.c, x.h * x.w});
    }
  CUDA_CHECK(cudaDeviceSynchronize());
}

void GpuParams::check_layout(const NetPlan& plan) const {
  bool same = plan.param_elems == elems_ && plan.params.size() == layout_.size();
  for (std::size_t i = 0; same && i < layout_.size(); ++i) {
    const ParamPlan &a = layout_[i], &b = plan.params[i];
    same = a.layer == b.layer && a.index == b.index && a.offset == b.offset && a.shape == b.shape &&
           a.lr_mult == b.lr_mult && a.decay_mult == b.decay_mult;
  }
  if (!same)
    throw Error(
        fmt::format("net {} ({} stage) lays out its parameters differently from the store it should share; "
                    "nets sharing weights need the same learnable layers",
                    plan.name, stage_name(plan.options.stage)));
}

void* GpuParams::weights() const {
  return dtype_ == DType::kBF16 ? weights_lp_.data() : master_.data();
}

void GpuParams::permute(std::span<float> v, bool to_device) const {
  std::vector<float> tmp;
  for (const Permute& p : permutes_) {
    float* at = v.data() + p.offset;
    tmp.assign(at, at + std::size_t(p.a) * p.b * p.r);
    if (to_device)
      permute_abr_to_arb(tmp.data(), p.a, p.b, p.r, at);
    else
      permute_arb_to_abr(tmp.data(), p.a, p.b, p.r, at);
  }
}

namespace {
void check_size(const char* what, std::size_t got, std::int64_t want) {
  if (std::int64_t(got) != want) throw Error(fmt::format("{}: {} values for {} parameters", what, got, want));
}
}  // namespace

void GpuParams::set_params(std::span<const float> host, cudaStream_t stream) {
  check_size("set_params", host.size(), elems_);
  std::vector<float> dev(host.begin(), host.end());
  permute(dev, true);
  master_.upload(dev.data(), dev.size() * 4, stream);
  std::vector<std::uint16_t> lp;
  if (dtype_ == DType::kBF16) {
    lp.resize(dev.size());
    for (std::size_t i = 0; i < dev.size(); ++i) lp[i] = kernels::f32_to_bf16_bits(dev[i]);
    weights_lp_.upload(lp.data(), lp.size() * 2, stream);
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));  // dev and lp go out of scope
}

void GpuParams::get_params(std::span<float> host, cudaStream_t stream) const {
  check_size("get_params", host.size(), elems_);
  master_.download(host.data(), host.size() * 4, stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  permute(host, false);
}

void GpuParams::get_grads(std::span<float> host, cudaStream_t stream) const {
  check_size("get_grads", host.size(), elems_);
  if (dtype_ == DType::kF32 || grad_sum_.bytes()) {
    (grad_sum_.bytes() ? grad_sum_ : grads_).download(host.data(), host.size() * 4, stream);
    CUDA_CHECK(cudaStreamSynchronize(stream));
  } else {
    std::vector<std::uint16_t> raw(host.size());
    grads_.download(raw.data(), raw.size() * 2, stream);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (std::size_t i = 0; i < raw.size(); ++i) host[i] = kernels::bf16_bits_to_f32(raw[i]);
  }
  permute(host, false);
}

void GpuParams::set_momentum(std::span<const float> host, cudaStream_t stream) {
  check_size("set_momentum", host.size(), elems_);
  std::vector<float> dev(host.begin(), host.end());
  permute(dev, true);
  history_.upload(dev.data(), dev.size() * 4, stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
}

void GpuParams::get_momentum(std::span<float> host, cudaStream_t stream) const {
  check_size("get_momentum", host.size(), elems_);
  history_.download(host.data(), host.size() * 4, stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  permute(host, false);
}

void GpuParams::zero_momentum(cudaStream_t stream) {
  history_.fill_bytes(0, stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
}

void GpuParams::zero_grads(cudaStream_t stream) {
  grads_.fill_bytes(0, stream);
}

void GpuParams::enable_fp32_grad_sum() {
  if (grad_sum_.bytes()) return;
  if (dtype_ == DType::kF32) throw Error("enable_fp32_grad_sum: the gradients are fp32 already");
  grad_sum_ = DeviceBuffer(std::size_t(std::max<std::int64_t>(elems_, 1)) * 4);
  grad_sum_.fill_bytes(0);
  CUDA_CHECK(cudaDeviceSynchronize());
}

void GpuParams::widen_grads(std::int64_t lo, std::int64_t hi, cudaStream_t stream) {
  if (!grad_sum_.bytes()) throw Error("widen_grads: no fp32 gradient sum (enable_fp32_grad_sum)");
  if (lo < 0 || hi > elems_ || lo > hi)
    throw Error(fmt::format("widen_grads: [{}, {}) outside [0, {})", lo, hi, elems_));
  kernels::widen_bf16(std::size_t(hi - lo), grads_.as<__nv_bfloat16>() + lo, grad_sum() + lo, stream);
}

void GpuParams::update(const kernels::SgdStepParams* step, cudaStream_t stream) {
  __nv_bfloat16* lp = dtype_ == DType::kBF16 ? weights_lp_.as<__nv_bfloat16>() : nullptr;
  if (dtype_ == DType::kF32 || grad_sum_.bytes())
    kernels::sgd_update<float>(n_segments_, segments_.as<kernels::SgdSegment>(), elems_, step,
                               grad_sum_.bytes() ? grad_sum() : grads_.as<float>(), master(), history(), lp,
                               stream);
  else
    kernels::sgd_update<__nv_bfloat16>(n_segments_, segments_.as<kernels::SgdSegment>(), elems_, step,
                                       grads_.as<__nv_bfloat16>(), master(), history(), lp, stream);
}

std::size_t GpuParams::device_bytes() const {
  return master_.bytes() + weights_lp_.bytes() + grads_.bytes() + history_.bytes() + grad_sum_.bytes() +
         segments_.bytes();
}

}  // namespace incept

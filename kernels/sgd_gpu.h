// GPU launcher of the solver update: Caffe's SGD with momentum and L2 weight decay applied to
// ALL parameters in one launch. Parameters live in one flat fp32 buffer (the master
// weights), their gradients in a second buffer of the same layout, and the momentum history
// in a third; a small table of segments (one per parameter blob) gives each blob's lr_mult
// and decay_mult. Per element i of segment s (Caffe's Regularize + ComputeUpdateValue + Update):
//   g  = grad[i] * grad_scale + weight_decay * decay_mult_s * w[i]
//   h  = momentum * h[i] + lr * lr_mult_s * g
//   w -= h
// The per-step values (lr, momentum, decay, grad scale) are read from device memory so a
// captured CUDA graph replays with the values the host copied in before the launch.
// With bf16 activations the step also refreshes the bf16 copy of the weights that cuDNN and
// cuBLAS read (weights_lp, same layout). Elements outside every segment are not touched.
// Launchers never allocate or sync.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype_gpu.h"

namespace incept::kernels {

struct SgdSegment {
  std::int64_t offset = 0;  // first element in the flat buffers
  std::int64_t count = 0;
  float lr_mult = 1.f;
  float decay_mult = 1.f;
};

struct SgdStepParams {
  float lr = 0.f;  // base learning rate of this step (after the LR policy)
  float momentum = 0.9f;
  float weight_decay = 0.f;
  float grad_scale = 1.f;  // 1 / (iter_size * loss_scale)
};

// segments: device array, sorted by offset, not overlapping (at most kSgdMaxSegments).
// grad: flat gradients of dtype G (float or __nv_bfloat16). master, history: fp32 flat.
// weights_lp: flat bf16 copy of the weights to refresh, or null.
constexpr int kSgdMaxSegments = 1024;
template <typename G>
void sgd_update(int n_segments, const SgdSegment* segments, std::int64_t n_total, const SgdStepParams* step,
                const G* grad, float* master, float* history, __nv_bfloat16* weights_lp, cudaStream_t stream);

}  // namespace incept::kernels

// GPU launchers for Caffe's SoftmaxWithLoss (forward and backward in one pass) and the
// Accuracy layer (top-k), on classifier outputs.
//
// logits: [N, K] row-major (the FC output, NCHW with H = W = 1), dtype T (float or
// __nv_bfloat16); labels: int32 [N] in [0, K), or negative: an ignored example (the padding of
// a last validation batch; Caffe's ignore_label). V = the examples not ignored (at least 1).
// Losses and accuracies are fp32.
//   loss = (1/V) * sum_n -log(max(softmax(logits_n)[label_n], FLT_MIN))   (unweighted: the
//          top blob Caffe prints; the net's objective adds loss_weight * loss)
//   dlogits = loss_weight / V * (softmax(logits) - onehot(label)), 0 for ignored rows
//          (Caffe, normalization VALID)
// Same definitions as the CPU reference kernels/softmax_ref.h (softmax_loss_fwd/_bwd, accuracy).
// The backward needs only the softmax, so the forward writes dlogits when given one: a step
// calls softmax_xent_fwd once with dlogits and has no separate backward launch.
// Accuracy (Caffe >= 2017): an example is correct when fewer than k classes score >= the
// true class's score, the true class included (ties count against).
// Reductions run in a fixed order: results are deterministic. Launchers never allocate or sync.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype_gpu.h"

namespace incept::kernels {

// row_loss: fp32 [N] scratch (per-example -log p). loss: one fp32, overwritten with the
// unweighted mean. dlogits: [N, K] of T or null (may alias logits: the gradient overwrites them).
template <typename T>
void softmax_xent_fwd(int n, int k, const T* logits, const std::int32_t* labels, float loss_weight,
                      float* row_loss, float* loss, T* dlogits, cudaStream_t stream);

// hits: fp32 [N] scratch; accuracy: one fp32, overwritten with the fraction correct.
template <typename T>
void accuracy_fwd(int n, int k, const T* logits, const std::int32_t* labels, int top_k, float* hits,
                  float* accuracy, cudaStream_t stream);

// out = scale * sum_i v[i], summed in a fixed order by one block (n fp32 values).
void sum_fwd(int n, const float* v, float scale, float* out, cudaStream_t stream);
// out = sum_i v[i] / max(1, #{i : labels[i] >= 0}), fixed order, one block.
void mean_valid_fwd(int n, const float* v, const std::int32_t* labels, float* out, cudaStream_t stream);
// acc[i] += weight * v[i] for i < n (fp64 sums of per-step outputs: training averages over
// a display interval, validation over a pass).
void accumulate(int n, const float* v, double weight, double* acc, cudaStream_t stream);

}  // namespace incept::kernels

// CPU references of Caffe's Softmax, SoftmaxWithLoss and Accuracy (axis 1 = channels; for
// classifiers H = W = 1). Labels are int32, one per (n, h, w), dense.
//
// SoftmaxWithLoss: prob = softmax(x); loss = -sum log(max(prob[label], FLT_MIN)) / count with
// normalization VALID: samples with a negative label are ignored (the padding of a last
// validation batch, like Caffe's ignore_label) and count = the others (at least 1). The returned loss is
// unweighted (it is the top blob's value, what Caffe prints); backward multiplies by loss_weight, as Caffe
// seeds the loss top's diff with loss_weight: dx = loss_weight * (prob - onehot) / count.
// Accuracy top-k (Caffe's tie rule): a sample counts as correct when fewer than k classes
// score >= the true class's score, the true class itself excluded; ties count against.
//
// Layouts: x, y, dx are NCHW views; prob is dense NCHW of x's logical shape.
// Gradient contract: dx is overwritten unless accumulate is true.
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace incept::ref {

// y = softmax over C (max-subtracted). x and y may alias.
template <typename T>
void softmax_fwd(const Nchw& xs, const T* x, const Nchw& ys, T* y);
// dx (= or +=) y * (dy - sum_c dy*y)
template <typename T>
void softmax_bwd(const Nchw& ys, const T* y, const T* dy, const Nchw& xs, T* dx, bool accumulate = false);

// Returns the loss (unweighted); writes prob (dense).
template <typename T>
T softmax_loss_fwd(const Nchw& xs, const T* x, const std::int32_t* label, T* prob);
template <typename T>
void softmax_loss_bwd(const Nchw& xs, const T* prob, const std::int32_t* label, T loss_weight, T* dx,
                      bool accumulate = false);

// Fraction of the N*H*W samples (negative labels ignored) whose label is within the top k of x.
template <typename T>
T accuracy(const Nchw& xs, const T* x, const std::int32_t* label, int top_k);

}  // namespace incept::ref

// CPU reference of Caffe's SGD update with momentum and L2 weight decay, for one contiguous
// run of parameters sharing lr_mult and decay_mult (the solver walks the parameter layout).
//
//   g' = g + decay * w            decay = weight_decay * decay_mult   (Caffe Regularize)
//   v  = momentum * v + lr * g'   lr    = rate(iter) * lr_mult        (ComputeUpdateValue)
//   w  = w - v                                                          (Blob::Update)
// w, g, v are dense arrays of `count` elements with the identical layout; g is left unchanged
// (Caffe leaves v in the diff; nothing reads it before the next zeroing).
#pragma once

#include <cstdint>

namespace incept::ref {

template <typename T>
void sgd_update(std::int64_t count, T lr, T momentum, T decay, T* w, const T* g, T* v);

}  // namespace incept::ref

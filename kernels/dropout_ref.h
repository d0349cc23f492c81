// CPU reference of Dropout (training only; identity at test time) with a counter-based
// mask that the GPU reproduces bit-exactly, so no mask is stored between forward and backward
// and a run is reproducible from its seed.
//
// Mask (the exact definition; host and device share these constexpr functions):
//   stream = splitmix64(seed) ^ splitmix64((uint64(step) << 20) | uint64(layer_id))
//   bits   = uint32(splitmix64(stream + i) >> 32)          i = logical element index
//   u      = float(bits >> 8) * 2^-24                        uniform in [0, 1), exact in fp32
//   keep(i) = u >= ratio                                     (ratio compared as float)
// where i = (((first_sample + n) * C + c) * H + h) * W + w is the dense logical index
// (independent of n_stride) and layer_id < 2^20. first_sample numbers the examples across the
// replicas of data-parallel training (a replica whose batch share starts at example k of the
// global batch passes k), so each example gets the mask it would get on one GPU. Kept values are scaled by 1
// / (1 - ratio) (Caffe's inverted dropout).
//
// Layouts: NCHW views; in place allowed. Gradient contract: dx overwritten unless accumulate.
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace incept::ref {

constexpr std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::uint64_t dropout_stream(std::uint64_t seed, std::uint64_t step, std::uint32_t layer_id) {
  return splitmix64(seed) ^ splitmix64((step << 20) | std::uint64_t(layer_id));
}

// Uniform in [0, 1) for element i of a stream, exactly representable in float.
constexpr float dropout_uniform(std::uint64_t stream, std::uint64_t i) {
  const std::uint32_t bits = std::uint32_t(splitmix64(stream + i) >> 32);
  return float(bits >> 8) * (1.0f / 16777216.0f);
}

constexpr bool dropout_keep(std::uint64_t stream, std::uint64_t i, float ratio) {
  return dropout_uniform(stream, i) >= ratio;
}

struct DropoutKey {
  std::uint64_t seed = 0;
  std::uint64_t step = 0;          // training iteration: forward and backward of a step agree
  std::uint32_t layer_id = 0;      // the layer's index in the net
  std::uint64_t first_sample = 0;  // this batch's first example within the global batch
};

// y = x * keep * 1/(1-ratio)
template <typename T>
void dropout_fwd(const Nchw& s, const T* x, float ratio, const DropoutKey& key, T* y);
// dx (= or +=) dy * keep * 1/(1-ratio), the mask recomputed from the same key.
template <typename T>
void dropout_bwd(const Nchw& s, const T* dy, float ratio, const DropoutKey& key, T* dx,
                 bool accumulate = false);

}  // namespace incept::ref

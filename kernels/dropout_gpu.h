// GPU launchers for Dropout with the counter-based mask of kernels/dropout_ref.h: the GPU
// computes the same splitmix64 hash of (seed, step, layer_id, element index), so its mask
// is bit-identical to the CPU reference's, nothing is stored between forward and backward,
// and a run is reproducible from seed and step.
//
// x, y, dy, dx: NCHW views of dtype T (float or __nv_bfloat16; in place allowed).
// step_dev: optional device pointer to the step counter (uint64). Given, the kernel reads the
// step from it, so a captured CUDA graph replays with the step the host copied in before the
// launch; null, key.step is used. Gradient contract: dx overwritten unless accumulate.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dropout_ref.h"
#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept::kernels {

template <typename T>
void dropout_fwd(const Nchw& s, const T* x, float ratio, const ref::DropoutKey& key,
                 const std::uint64_t* step_dev, T* y, cudaStream_t stream);

template <typename T>
void dropout_bwd(const Nchw& s, const T* dy, float ratio, const ref::DropoutKey& key,
                 const std::uint64_t* step_dev, T* dx, bool accumulate, cudaStream_t stream);

}  // namespace incept::kernels

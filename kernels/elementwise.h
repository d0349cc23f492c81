// Elementwise vector ops on the GPU (launchers) and their CPU references.
// Launchers never allocate and never synchronize.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace incept::kernels {

// y[i] = a * x[i] + b * y[i], fp32, n elements (any layout).
void axpby_fwd(std::size_t n, float a, const float* x, float b, float* y, cudaStream_t stream);
void axpby_ref(std::size_t n, float a, const float* x, float b, float* y);

}  // namespace incept::kernels

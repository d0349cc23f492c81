// Elementwise vector ops (elementwise.h): a grid-stride loop, one element per step.
#include "engine/check.h"
#include "kernels/elementwise.h"

namespace incept::kernels {

__global__ void axpby_fwd_kernel(std::size_t n, float a, const float* __restrict__ x, float b,
                                 float* __restrict__ y) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    y[i] = a * x[i] + b * y[i];
  }
}

void axpby_fwd(std::size_t n, float a, const float* x, float b, float* y, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const std::size_t blocks = std::min<std::size_t>((n + threads - 1) / threads, 65535);
  axpby_fwd_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(n, a, x, b, y);
  KERNEL_CHECK("axpby_fwd_kernel");
}

void axpby_ref(std::size_t n, float a, const float* x, float b, float* y) {
  for (std::size_t i = 0; i < n; ++i) y[i] = a * x[i] + b * y[i];
}

}  // namespace incept::kernels

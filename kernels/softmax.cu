// Softmax forward kernel (softmax_gpu.h): one block per row, warp-shuffle + shared-array
// reductions for the row maximum and the sum of exponentials.
#include <cfloat>

#include "engine/check.h"
#include "kernels/block_reduce_gpu.cuh"
#include "kernels/softmax_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

// Each thread reads and writes only its own elements j (after both reductions), so y may alias x.
template <typename T>
__global__ void softmax_fwd_kernel(int k, const T* x, T* y) {
  const long long row = static_cast<long long>(blockIdx.x) * k;
  float m = -FLT_MAX;
  for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, to_f32(x[row + j]));
  m = block_reduce<true>(m);
  float s = 0.f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(to_f32(x[row + j]) - m);
  const float inv = 1.f / block_reduce<false>(s);
  for (int j = threadIdx.x; j < k; j += blockDim.x)
    y[row + j] = from_f32<T>(expf(to_f32(x[row + j]) - m) * inv);
}

}  // namespace

template <typename T>
void softmax_fwd(int n, int k, const T* x, T* y, cudaStream_t stream) {
  if (n == 0 || k == 0) return;
  softmax_fwd_kernel<T><<<n, kThreads, 0, stream>>>(k, x, y);
  KERNEL_CHECK("softmax_fwd_kernel");
}

template void softmax_fwd<float>(int, int, const float*, float*, cudaStream_t);
template void softmax_fwd<__nv_bfloat16>(int, int, const __nv_bfloat16*, __nv_bfloat16*, cudaStream_t);

}  // namespace incept::kernels

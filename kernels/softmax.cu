// Softmax forward kernel (softmax_gpu.h): one block per row, warp-shuffle + shared-array
// reductions for the row maximum and the sum of exponentials.
#include <cfloat>

#include "engine/check.h"
#include "kernels/softmax_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

// Max (kMax) or sum over the block, in a fixed order; every thread gets the result.
template <bool kMax>
__device__ float row_reduce(float v) {
  __shared__ float partial[32];
  __shared__ float result;
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : (kMax ? -FLT_MAX : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = kMax ? fmaxf(v, other) : v + other;
    }
    if (threadIdx.x == 0) result = v;
  }
  __syncthreads();
  const float r = result;
  __syncthreads();  // partial/result are reused by the next reduction
  return r;
}

// Each thread reads and writes only its own elements j (after both reductions), so y may alias x.
template <typename T>
__global__ void softmax_fwd_kernel(int k, const T* x, T* y) {
  const long long row = static_cast<long long>(blockIdx.x) * k;
  float m = -FLT_MAX;
  for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, to_f32(x[row + j]));
  m = row_reduce<true>(m);
  float s = 0.f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(to_f32(x[row + j]) - m);
  const float inv = 1.f / row_reduce<false>(s);
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

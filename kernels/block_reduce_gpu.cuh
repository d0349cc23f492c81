// Device helper shared by the row kernels (softmax, softmax loss, accuracy): a max or sum over
// one thread block in a fixed order (warp shuffles, then one warp over the warps' partials), so
// every result is deterministic. Every thread of the block must call it; every thread gets the
// result. Included by .cu files only.
#pragma once

#include <cfloat>

namespace incept::kernels {

template <bool kMax>
__device__ inline float block_reduce(float v) {
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

}  // namespace incept::kernels

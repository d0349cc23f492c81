// Softmax cross-entropy and top-k accuracy kernels (softmax_loss_gpu.h). One block per
// example row: K = 1000 classes fit a block's loop in a few passes; block reductions use
// warp shuffles and a shared array, so every sum is in a fixed order.
#include <cfloat>

#include "engine/check.h"
#include "kernels/softmax_loss_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

template <bool kMax>
__device__ float block_reduce(float v) {
  __shared__ float red[32];
  __shared__ float result;
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    const int warps = blockDim.x >> 5;
    v = threadIdx.x < warps ? red[threadIdx.x] : (kMax ? -FLT_MAX : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = kMax ? fmaxf(v, other) : v + other;
    }
    if (threadIdx.x == 0) result = v;
  }
  __syncthreads();
  const float r = result;
  __syncthreads();  // red/result may be reused by the next call
  return r;
}

template <typename T>
__global__ void softmax_xent_fwd_kernel(int k, const T* logits, const std::int32_t* __restrict__ labels,
                                        float grad_scale, float* __restrict__ row_loss, T* dlogits) {
  const int n = blockIdx.x;
  const T* row = logits + static_cast<long long>(n) * k;
  float m = -FLT_MAX;
  for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, to_f32(row[j]));
  m = block_reduce<true>(m);
  float s = 0.f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(to_f32(row[j]) - m);
  s = block_reduce<false>(s);
  const int label = labels[n];
  const float inv = 1.f / s;
  if (threadIdx.x == 0) {
    const float p = expf(to_f32(row[label]) - m) * inv;
    row_loss[n] = -logf(fmaxf(p, FLT_MIN));
  }
  __syncthreads();  // the label's logit is read above before dlogits (maybe aliased) is written
  if (dlogits) {
    T* drow = dlogits + static_cast<long long>(n) * k;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      const float p = expf(to_f32(row[j]) - m) * inv;
      drow[j] = from_f32<T>(grad_scale * (p - (j == label ? 1.f : 0.f)));
    }
  }
}

template <typename T>
__global__ void accuracy_fwd_kernel(int k, const T* __restrict__ logits,
                                    const std::int32_t* __restrict__ labels, int top_k,
                                    float* __restrict__ hits) {
  const int n = blockIdx.x;
  const T* row = logits + static_cast<long long>(n) * k;
  const float truth = to_f32(row[labels[n]]);
  float better = 0.f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) better += to_f32(row[j]) >= truth ? 1.f : 0.f;
  better = block_reduce<false>(better);
  if (threadIdx.x == 0) hits[n] = (better - 1.f) < static_cast<float>(top_k) ? 1.f : 0.f;
}

__global__ void sum_fwd_kernel(int n, const float* __restrict__ v, float scale, float* __restrict__ out) {
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
  s = block_reduce<false>(s);
  if (threadIdx.x == 0) *out = s * scale;
}

}  // namespace

void sum_fwd(int n, const float* v, float scale, float* out, cudaStream_t stream) {
  sum_fwd_kernel<<<1, 1024, 0, stream>>>(n, v, scale, out);
  KERNEL_CHECK("sum_fwd_kernel");
}

template <typename T>
void softmax_xent_fwd(int n, int k, const T* logits, const std::int32_t* labels, float loss_weight,
                      float* row_loss, float* loss, T* dlogits, cudaStream_t stream) {
  if (n == 0) return;
  softmax_xent_fwd_kernel<T>
      <<<n, kThreads, 0, stream>>>(k, logits, labels, loss_weight / n, row_loss, dlogits);
  KERNEL_CHECK("softmax_xent_fwd_kernel");
  sum_fwd(n, row_loss, 1.f / n, loss, stream);
}

template <typename T>
void accuracy_fwd(int n, int k, const T* logits, const std::int32_t* labels, int top_k, float* hits,
                  float* accuracy, cudaStream_t stream) {
  if (n == 0) return;
  accuracy_fwd_kernel<T><<<n, kThreads, 0, stream>>>(k, logits, labels, top_k, hits);
  KERNEL_CHECK("accuracy_fwd_kernel");
  sum_fwd(n, hits, 1.f / n, accuracy, stream);
}

#define INCEPT_INSTANTIATE(T)                                                                           \
  template void softmax_xent_fwd<T>(int, int, const T*, const std::int32_t*, float, float*, float*, T*, \
                                    cudaStream_t);                                                      \
  template void accuracy_fwd<T>(int, int, const T*, const std::int32_t*, int, float*, float*, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

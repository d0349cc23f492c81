// Softmax cross-entropy and top-k accuracy kernels (softmax_loss_gpu.h). One block per
// example row: K = 1000 classes fit a block's loop in a few passes; block reductions use
// warp shuffles and a shared array, so every sum is in a fixed order.
#include <cfloat>

#include "engine/check.h"
#include "kernels/block_reduce_gpu.cuh"
#include "kernels/softmax_loss_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

// Examples whose label is negative are ignored (a padded validation batch): Caffe's
// normalization VALID divides by the examples that count, never less than one.
__device__ float valid_count(int n, const std::int32_t* __restrict__ labels) {
  float c = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) c += labels[i] >= 0 ? 1.f : 0.f;
  return fmaxf(block_reduce<false>(c), 1.f);
}

template <typename T>
__global__ void softmax_xent_fwd_kernel(int n_rows, int k, const T* logits,
                                        const std::int32_t* __restrict__ labels, float loss_weight,
                                        float* __restrict__ row_loss, T* dlogits) {
  const int n = blockIdx.x;
  const float grad_scale = loss_weight / valid_count(n_rows, labels);
  const int label = labels[n];
  if (label < 0) {
    if (threadIdx.x == 0) row_loss[n] = 0.f;
    if (dlogits)
      for (int j = threadIdx.x; j < k; j += blockDim.x)
        dlogits[static_cast<long long>(n) * k + j] = from_f32<T>(0.f);
    return;
  }
  const T* row = logits + static_cast<long long>(n) * k;
  float m = -FLT_MAX;
  for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, to_f32(row[j]));
  m = block_reduce<true>(m);
  float s = 0.f;
  for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(to_f32(row[j]) - m);
  s = block_reduce<false>(s);
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
  if (labels[n] < 0) {  // ignored (padding)
    if (threadIdx.x == 0) hits[n] = 0.f;
    return;
  }
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

__global__ void mean_valid_kernel(int n, const float* __restrict__ v, const std::int32_t* __restrict__ labels,
                                  float* __restrict__ out) {
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
  s = block_reduce<false>(s);
  const float count = valid_count(n, labels);
  if (threadIdx.x == 0) *out = s / count;
}

__global__ void accumulate_kernel(int n, const float* __restrict__ v, double weight,
                                  double* __restrict__ acc) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) acc[i] += weight * static_cast<double>(v[i]);
}

}  // namespace

void sum_fwd(int n, const float* v, float scale, float* out, cudaStream_t stream) {
  sum_fwd_kernel<<<1, 1024, 0, stream>>>(n, v, scale, out);
  KERNEL_CHECK("sum_fwd_kernel");
}

void mean_valid_fwd(int n, const float* v, const std::int32_t* labels, float* out, cudaStream_t stream) {
  mean_valid_kernel<<<1, 1024, 0, stream>>>(n, v, labels, out);
  KERNEL_CHECK("mean_valid_kernel");
}

void accumulate(int n, const float* v, double weight, double* acc, cudaStream_t stream) {
  if (n == 0) return;
  accumulate_kernel<<<(n + 255) / 256, 256, 0, stream>>>(n, v, weight, acc);
  KERNEL_CHECK("accumulate_kernel");
}

template <typename T>
void softmax_xent_fwd(int n, int k, const T* logits, const std::int32_t* labels, float loss_weight,
                      float* row_loss, float* loss, T* dlogits, cudaStream_t stream) {
  if (n == 0) return;
  softmax_xent_fwd_kernel<T>
      <<<n, kThreads, 0, stream>>>(n, k, logits, labels, loss_weight, row_loss, dlogits);
  KERNEL_CHECK("softmax_xent_fwd_kernel");
  mean_valid_fwd(n, row_loss, labels, loss, stream);
}

template <typename T>
void accuracy_fwd(int n, int k, const T* logits, const std::int32_t* labels, int top_k, float* hits,
                  float* accuracy, cudaStream_t stream) {
  if (n == 0) return;
  accuracy_fwd_kernel<T><<<n, kThreads, 0, stream>>>(k, logits, labels, top_k, hits);
  KERNEL_CHECK("accuracy_fwd_kernel");
  mean_valid_fwd(n, hits, labels, accuracy, stream);
}

#define INCEPT_INSTANTIATE(T)                                                                           \
  template void softmax_xent_fwd<T>(int, int, const T*, const std::int32_t*, float, float*, float*, T*, \
                                    cudaStream_t);                                                      \
  template void accuracy_fwd<T>(int, int, const T*, const std::int32_t*, int, float*, float*, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

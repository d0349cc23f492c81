// Elementwise vector ops (elementwise.h): grid-stride loops, one element per step.
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

template <typename S, typename T>
__global__ void sum_rows_add_kernel(int rows, long long cols, const S* __restrict__ src,
                                    T* __restrict__ dst) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < cols;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int r = 0; r < rows; ++r) sum += to_f32(src[r * cols + i]);
    dst[i] = from_f32<T>(to_f32(dst[i]) + sum);
  }
}

template <typename S, typename T>
void sum_rows_add(int rows, long long cols, const S* src, T* dst, cudaStream_t stream) {
  if (cols <= 0) return;
  sum_rows_add_kernel<S, T><<<grid_for(std::size_t(cols), 256), 256, 0, stream>>>(rows, cols, src, dst);
  KERNEL_CHECK("sum_rows_add_kernel");
}
template void sum_rows_add<float, float>(int, long long, const float*, float*, cudaStream_t);
template void sum_rows_add<__nv_bfloat16, __nv_bfloat16>(int, long long, const __nv_bfloat16*, __nv_bfloat16*,
                                                         cudaStream_t);
template void sum_rows_add<float, __nv_bfloat16>(int, long long, const float*, __nv_bfloat16*, cudaStream_t);

void sum_rows_add_ref(int rows, long long cols, const float* src, float* dst) {
  for (long long i = 0; i < cols; ++i) {
    float sum = 0.f;
    for (int r = 0; r < rows; ++r) sum += src[r * cols + i];
    dst[i] += sum;
  }
}

__global__ void widen_bf16_kernel(std::size_t n, const __nv_bfloat16* __restrict__ src,
                                  float* __restrict__ dst) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

void widen_bf16(std::size_t n, const __nv_bfloat16* src, float* dst, cudaStream_t stream) {
  if (n == 0) return;
  widen_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(n, src, dst);
  KERNEL_CHECK("widen_bf16_kernel");
}

void widen_bf16_ref(std::size_t n, const std::uint16_t* src_bits, float* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t u = std::uint32_t(src_bits[i]) << 16;
    __builtin_memcpy(&dst[i], &u, 4);
  }
}

}  // namespace incept::kernels

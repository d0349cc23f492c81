// Elementwise vector ops (elementwise.h): grid-stride loops, one element per step.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/check.h"
#include "kernels/dtype_gpu.h"
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

// One element of elem_size bytes per index: width per row, rows pitch bytes apart.
__global__ void memset_node_kernel(char* dst, std::size_t pitch, unsigned value, unsigned elem_size,
                                   std::size_t width, std::size_t total) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t row = i / width, col = i - row * width;
    char* at = dst + row * pitch + col * elem_size;
    if (elem_size == 4)
      *reinterpret_cast<unsigned*>(at) = value;
    else if (elem_size == 2)
      *reinterpret_cast<unsigned short*>(at) = static_cast<unsigned short>(value);
    else
      *at = static_cast<char>(value);
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

__global__ void round_to_bf16_kernel(std::size_t n, float* x) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    x[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
}

// x rounded to TF32 as fp32 bits (see split_tf32), the same on host and device.
__host__ __device__ inline std::uint32_t tf32_big_bits(std::uint32_t u) {
  if (((u >> 23) & 0xFFu) == 0xFFu) return u;  // inf, NaN
  const std::uint32_t r = (u + 0xFFFu + ((u >> 13) & 1u)) & 0xFFFFE000u;
  return ((r >> 23) & 0xFFu) == 0xFFu ? (u & 0xFFFFE000u) : r;
}

__global__ void split_tf32_kernel(std::size_t n, const float* x, float* big, float* small) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const float b = __uint_as_float(tf32_big_bits(__float_as_uint(v)));
    big[i] = b;
    small[i] = isfinite(v) ? v - b : 0.f;
  }
}

void split_tf32(std::size_t n, const float* x, float* big, float* small, cudaStream_t stream) {
  if (n == 0) return;
  split_tf32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(n, x, big, small);
  KERNEL_CHECK("split_tf32_kernel");
}

void split_tf32_ref(std::size_t n, const float* x, float* big, float* small) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    __builtin_memcpy(&u, &x[i], 4);
    const std::uint32_t r = tf32_big_bits(u);
    __builtin_memcpy(&big[i], &r, 4);
    small[i] = std::isfinite(x[i]) ? x[i] - big[i] : 0.f;
  }
}

void round_to_bf16(std::size_t n, float* x, cudaStream_t stream) {
  if (n == 0) return;
  round_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(n, x);
  KERNEL_CHECK("round_to_bf16_kernel");
}

cudaGraphNode_t add_memset_kernel_node(cudaGraph_t graph, const cudaGraphNode_t* deps, std::size_t num_deps,
                                       const cudaMemsetParams& p) {
  if (p.elementSize != 1 && p.elementSize != 2 && p.elementSize != 4)
    throw Error("add_memset_kernel_node: elementSize must be 1, 2 or 4");
  char* dst = static_cast<char*>(p.dst);
  std::size_t pitch = p.height > 1 ? p.pitch : p.width * p.elementSize;
  unsigned value = p.value, elem = p.elementSize;
  std::size_t width = p.width, total = p.width * p.height;
  void* args[] = {&dst, &pitch, &value, &elem, &width, &total};
  cudaKernelNodeParams k{};
  k.func = reinterpret_cast<void*>(&memset_node_kernel);
  k.blockDim = dim3(256);
  k.gridDim = dim3(static_cast<unsigned>(grid_for(std::max<std::size_t>(total, 1), 256)));
  k.sharedMemBytes = 0;
  k.kernelParams = args;
  cudaGraphNode_t node = nullptr;
  CUDA_CHECK(cudaGraphAddKernelNode(&node, graph, deps, num_deps, &k));
  return node;
}

void round_to_bf16_ref(std::size_t n, float* x) {
  for (std::size_t i = 0; i < n; ++i) x[i] = bf16_bits_to_f32(f32_to_bf16_bits(x[i]));
}

void widen_bf16_ref(std::size_t n, const std::uint16_t* src_bits, float* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t u = std::uint32_t(src_bits[i]) << 16;
    __builtin_memcpy(&dst[i], &u, 4);
  }
}

}  // namespace incept::kernels

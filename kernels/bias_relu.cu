// ReLU, bias add and bias gradient kernels (bias_relu_gpu.h). Elementwise kernels walk a
// view plane by plane: blockIdx.x is the (n, c) plane, threads stride over H*W, so the
// channel (and the bias) is per block and no per-element division is needed.
#include <algorithm>

#include "engine/check.h"
#include "kernels/bias_relu_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

// Threads per block: small planes (7x7, 14x14) get a block that fits them.
inline int plane_threads(const Nchw& s) {
  const int hw = s.h * s.w;
  return hw >= kThreads ? kThreads : (hw + 31) / 32 * 32;
}
// Blocks per plane for planes of hw elements (several blocks for big planes).
inline dim3 plane_grid(const Nchw& s) {
  const int hw = s.h * s.w;
  const int per_plane = (hw + kThreads * 4 - 1) / (kThreads * 4);
  return dim3(s.n * s.c, per_plane);
}

template <typename T>
__global__ void bias_relu_fwd_kernel(int c_dim, int hw, long long nstride, const T* __restrict__ bias,
                                     bool relu, T* __restrict__ y) {
  const int plane = blockIdx.x;
  const int n = plane / c_dim, c = plane % c_dim;
  T* p = y + n * nstride + static_cast<long long>(c) * hw;
  const float b = bias ? to_f32(bias[c]) : 0.f;
  for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < hw; i += gridDim.y * blockDim.x) {
    float v = to_f32(p[i]) + b;
    if (relu) v = v > 0.f ? v : 0.f;
    p[i] = from_f32<T>(v);
  }
}

// Channels-last: one thread per element, the channel fastest (coalesced, bias from cache).
template <typename T>
__global__ void bias_relu_fwd_nhwc_kernel(unsigned total, int c_dim, int hw, int pix, long long nstride,
                                          const T* __restrict__ bias, bool relu, T* __restrict__ y) {
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const unsigned r = j / c_dim;
    const int c = static_cast<int>(j - r * c_dim);
    const unsigned n = r / hw, p = r - n * hw;
    T* q = y + n * nstride + static_cast<long long>(p) * pix + c;
    float v = to_f32(*q) + (bias ? to_f32(bias[c]) : 0.f);
    if (relu) v = v > 0.f ? v : 0.f;
    *q = from_f32<T>(v);
  }
}

// Flat variant for tiny planes (FC outputs are N x M x 1 x 1): one element per thread.
template <typename T>
__global__ void bias_relu_fwd_flat_kernel(long long total, int c_dim, int hw, long long nstride,
                                          const T* __restrict__ bias, bool relu, T* __restrict__ y) {
  const long long image = static_cast<long long>(c_dim) * hw;
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long n = j / image, r = j - n * image;
    T* p = y + n * nstride + r;
    float v = to_f32(*p) + (bias ? to_f32(bias[r / hw]) : 0.f);
    if (relu) v = v > 0.f ? v : 0.f;
    *p = from_f32<T>(v);
  }
}

template <typename T>
__global__ void relu_fwd_kernel(int c_dim, int hw, long long nstride, const T* __restrict__ x,
                                T* __restrict__ y) {
  const int plane = blockIdx.x;
  const long long off = (plane / c_dim) * nstride + static_cast<long long>(plane % c_dim) * hw;
  for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < hw; i += gridDim.y * blockDim.x) {
    const float v = to_f32(x[off + i]);
    y[off + i] = from_f32<T>(v > 0.f ? v : 0.f);
  }
}

template <typename T>
__global__ void relu_bwd_kernel(int c_dim, int hw, long long nstride, const T* __restrict__ y, const T* dy,
                                T* dx, bool accumulate) {
  const int plane = blockIdx.x;
  const long long off = (plane / c_dim) * nstride + static_cast<long long>(plane % c_dim) * hw;
  for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < hw; i += gridDim.y * blockDim.x) {
    float v = to_f32(y[off + i]) > 0.f ? to_f32(dy[off + i]) : 0.f;
    if (accumulate) v += to_f32(dx[off + i]);
    dx[off + i] = from_f32<T>(v);
  }
}

// One block per channel: walk every image's plane of that channel, write dz, sum it.
// (Fallback when the caller gives no partial-sum scratch.)
// Sum of one float per thread over the block (blockDim.x a multiple of 32, at most 1024), in a
// fixed order: deterministic. The result is valid in thread 0.
__device__ float block_sum(float sum) {
  __shared__ float red[32];
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    sum = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  }
  return sum;
}

template <typename T>
__global__ void relu_bias_bwd_kernel(int n_dim, int c_dim, int hw, long long nstride, const T* __restrict__ y,
                                     const T* dy, bool relu, T* dz, T* db) {
  const int c = blockIdx.x;
  float sum = 0.f;
  const int total = n_dim * hw;
  for (int j = threadIdx.x; j < total; j += blockDim.x) {
    const int n = j / hw, i = j - n * hw;
    const long long o = n * nstride + static_cast<long long>(c) * hw + i;
    float g = to_f32(dy[o]);
    if (relu) {
      g = to_f32(y[o]) > 0.f ? g : 0.f;
      dz[o] = from_f32<T>(g);
    } else if (dz != dy) {
      dz[o] = dy[o];
    }
    sum += g;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0 && db) db[c] = from_f32<T>(to_f32(db[c]) + sum);
}

// Split reduction, pass 1: block (chunk, c) handles images [chunk*per, min(n, chunk*per+per))
// of channel c, writes dz and one fp32 partial sum partial[c * chunks + chunk].
template <typename T>
__global__ void relu_bias_bwd_partial_kernel(int n_dim, int hw, long long nstride, int per,
                                             const T* __restrict__ y, const T* dy, bool relu, T* dz,
                                             float* __restrict__ partial) {
  const int chunk = blockIdx.x, c = blockIdx.y;
  const int n0 = chunk * per, n1 = min(n_dim, n0 + per);
  float sum = 0.f;
  const long long cbase = static_cast<long long>(c) * hw;
  if (hw >= static_cast<int>(blockDim.x)) {
    for (int n = n0; n < n1; ++n) {
      const long long base = n * nstride + cbase;
      for (int i = threadIdx.x; i < hw; i += blockDim.x) {
        const long long o = base + i;
        float g = to_f32(dy[o]);
        if (relu) {
          g = to_f32(y[o]) > 0.f ? g : 0.f;
          dz[o] = from_f32<T>(g);
        } else if (dz != dy) {
          dz[o] = dy[o];
        }
        sum += g;
      }
    }
  } else {
    const int total = (n1 - n0) * hw;
    for (int j = threadIdx.x; j < total; j += blockDim.x) {
      const int q = j / hw, i = j - q * hw;
      const long long o = (n0 + q) * nstride + cbase + i;
      float g = to_f32(dy[o]);
      if (relu) {
        g = to_f32(y[o]) > 0.f ? g : 0.f;
        dz[o] = from_f32<T>(g);
      } else if (dz != dy) {
        dz[o] = dy[o];
      }
      sum += g;
    }
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[static_cast<long long>(c) * gridDim.x + chunk] = sum;
}

// Pass 2: one thread per channel adds its partial sums in chunk order: deterministic.
template <typename T>
__global__ void bias_grad_finish_kernel(int c_dim, int chunks, const float* __restrict__ partial, T* db) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= c_dim) return;
  float sum = 0.f;
  for (int k = 0; k < chunks; ++k) sum += partial[static_cast<long long>(c) * chunks + k];
  db[c] = from_f32<T>(to_f32(db[c]) + sum);
}

// Images per chunk of the split reduction: about kTargetBlocks blocks in all.
constexpr int kTargetBlocks = 1056;  // 8 per SM on a 132-SM H100
inline int images_per_chunk(const Nchw& s) {
  const int chunks = std::max(1, std::min(s.n, (kTargetBlocks + s.c - 1) / s.c));
  return (s.n + chunks - 1) / chunks;
}

}  // namespace

template <typename T>
void bias_relu_fwd(const Nchw& s, const T* bias, bool relu, T* y, cudaStream_t stream) {
  if (s.count() == 0) return;
  if (s.h * s.w < 64) {
    bias_relu_fwd_flat_kernel<T><<<grid_for(s.count(), kThreads), kThreads, 0, stream>>>(
        s.count(), s.c, s.h * s.w, s.nstride(), bias, relu, y);
    KERNEL_CHECK("bias_relu_fwd_flat_kernel");
    return;
  }
  bias_relu_fwd_kernel<T>
      <<<plane_grid(s), plane_threads(s), 0, stream>>>(s.c, s.h * s.w, s.nstride(), bias, relu, y);
  KERNEL_CHECK("bias_relu_fwd_kernel");
}

template <typename T>
void bias_relu_fwd_nhwc(const Nchw& s, const T* bias, bool relu, T* y, cudaStream_t stream) {
  if (s.count() == 0) return;
  if (s.count() >= (std::int64_t(1) << 32))
    throw Error("bias_relu_fwd_nhwc: tensor too large for 32-bit indexing");
  const int hw = s.h * s.w;
  bias_relu_fwd_nhwc_kernel<T><<<grid_for(s.count(), kThreads), kThreads, 0, stream>>>(
      static_cast<unsigned>(s.count()), s.c, hw, static_cast<int>(s.nstride() / hw), s.nstride(), bias, relu,
      y);
  KERNEL_CHECK("bias_relu_fwd_nhwc_kernel");
}

template <typename T>
void relu_fwd(const Nchw& s, const T* x, T* y, cudaStream_t stream) {
  if (s.count() == 0) return;
  relu_fwd_kernel<T><<<plane_grid(s), plane_threads(s), 0, stream>>>(s.c, s.h * s.w, s.nstride(), x, y);
  KERNEL_CHECK("relu_fwd_kernel");
}

template <typename T>
void relu_bwd(const Nchw& s, const T* y, const T* dy, T* dx, bool accumulate, cudaStream_t stream) {
  if (s.count() == 0) return;
  relu_bwd_kernel<T>
      <<<plane_grid(s), plane_threads(s), 0, stream>>>(s.c, s.h * s.w, s.nstride(), y, dy, dx, accumulate);
  KERNEL_CHECK("relu_bwd_kernel");
}

std::size_t relu_bias_bwd_scratch(const Nchw& s) {
  if (s.count() == 0) return 0;
  const int per = images_per_chunk(s);
  return std::size_t(s.c) * ((s.n + per - 1) / per);
}

template <typename T>
void relu_bias_bwd(const Nchw& s, const T* y, const T* dy, bool relu, T* dz, T* db, float* partial,
                   cudaStream_t stream) {
  if (s.count() == 0) return;
  const int hw = s.h * s.w;
  if (db == nullptr || partial == nullptr) {
    if (db == nullptr) {  // no bias: the masking alone, elementwise
      if (relu)
        relu_bwd<T>(s, y, dy, dz, false, stream);
      else if (dz != dy)
        relu_bias_bwd_kernel<T>
            <<<s.c, 512, 0, stream>>>(s.n, s.c, hw, s.nstride(), y, dy, false, dz, nullptr);
      KERNEL_CHECK("relu_bias_bwd_kernel");
      return;
    }
    relu_bias_bwd_kernel<T><<<s.c, 512, 0, stream>>>(s.n, s.c, hw, s.nstride(), y, dy, relu, dz, db);
    KERNEL_CHECK("relu_bias_bwd_kernel");
    return;
  }
  const int per = images_per_chunk(s);
  const int chunks = (s.n + per - 1) / per;
  const int threads = hw >= 256 ? 256 : std::max(64, std::min(256, (per * hw + 31) / 32 * 32));
  relu_bias_bwd_partial_kernel<T>
      <<<dim3(chunks, s.c), threads, 0, stream>>>(s.n, hw, s.nstride(), per, y, dy, relu, dz, partial);
  KERNEL_CHECK("relu_bias_bwd_partial_kernel");
  bias_grad_finish_kernel<T><<<(s.c + 127) / 128, 128, 0, stream>>>(s.c, chunks, partial, db);
  KERNEL_CHECK("bias_grad_finish_kernel");
}

#define INCEPT_INSTANTIATE(T)                                                         \
  template void bias_relu_fwd<T>(const Nchw&, const T*, bool, T*, cudaStream_t);      \
  template void relu_fwd<T>(const Nchw&, const T*, T*, cudaStream_t);                 \
  template void bias_relu_fwd_nhwc<T>(const Nchw&, const T*, bool, T*, cudaStream_t); \
  template void relu_bwd<T>(const Nchw&, const T*, const T*, T*, bool, cudaStream_t); \
  template void relu_bias_bwd<T>(const Nchw&, const T*, const T*, bool, T*, T*, float*, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

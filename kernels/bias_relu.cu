// ReLU, bias add and bias gradient kernels (bias_relu_gpu.h). Elementwise kernels walk a
// view plane by plane: blockIdx.x is the (n, c) plane, threads stride over H*W, so the
// channel (and the bias) is per block and no per-element division is needed.
#include <algorithm>

#include "engine/check.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/nhwc_view.h"

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

// Flat variants of relu fwd/bwd for tiny planes (an FC output is N x M x 1 x 1: one plane per
// element would launch N*M blocks of one busy thread).
template <typename T>
__global__ void relu_flat_kernel(long long total, long long image, long long nstride, const T* __restrict__ y,
                                 const T* dy, T* dx, bool backward, bool accumulate) {
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long n = j / image, o = n * nstride + (j - n * image);
    float v;
    if (backward) {
      v = to_f32(y[o]) > 0.f ? to_f32(dy[o]) : 0.f;
      if (accumulate) v += to_f32(dx[o]);
    } else {  // forward: y is x, dx is y
      const float x = to_f32(y[o]);
      v = x > 0.f ? x : 0.f;
    }
    dx[o] = from_f32<T>(v);
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

// One element of ReLU backward: g = relu ? dy * (y > 0) : dy, written to dz (unless dz is dy
// and nothing changes); returns g for the bias-gradient sum.
template <typename T>
__device__ inline float relu_grad_at(const T* __restrict__ y, const T* dy, bool relu, T* dz, long long o) {
  float g = to_f32(dy[o]);
  if (relu) {
    g = to_f32(y[o]) > 0.f ? g : 0.f;
    dz[o] = from_f32<T>(g);
  } else if (dz != dy) {
    dz[o] = dy[o];
  }
  return g;
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
    sum += relu_grad_at(y, dy, relu, dz, o);
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
        sum += relu_grad_at(y, dy, relu, dz, o);
      }
    }
  } else {
    const int total = (n1 - n0) * hw;
    for (int j = threadIdx.x; j < total; j += blockDim.x) {
      const int q = j / hw, i = j - q * hw;
      const long long o = (n0 + q) * nstride + cbase + i;
      sum += relu_grad_at(y, dy, relu, dz, o);
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

// ---- channels-last --------------------------------------------------------------------------
// One thread per V consecutive channels of one pixel (groups = C / V per pixel), channel
// groups fastest: neighbouring threads touch neighbouring 16-byte chunks.
template <typename T, int V>
__global__ void bias_relu_copy_nhwc_kernel(unsigned total, int groups, int hw, NhwcArgs za,
                                           const T* __restrict__ z, const T* __restrict__ bias, bool relu,
                                           NhwcArgs ya, T* y) {
  for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < total; j += gridDim.x * blockDim.x) {
    const unsigned r = j / groups;
    const int c = static_cast<int>(j - r * groups) * V;
    const unsigned n = r / hw, p = r - n * hw;
    Pack<T, V> v =
        *reinterpret_cast<const Pack<T, V>*>(z + n * za.ns + static_cast<long long>(p) * za.pix + c);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      float f = to_f32(v.v[e]) + (bias ? to_f32(bias[c + e]) : 0.f);
      if (relu) f = f > 0.f ? f : 0.f;
      v.v[e] = from_f32<T>(f);
    }
    *reinterpret_cast<Pack<T, V>*>(y + n * ya.ns + static_cast<long long>(p) * ya.pix + c) = v;
  }
}

// Backward pass 1: block (chunk, tile) handles pixels [chunk * per, ...) of channel groups
// [tile * bx, tile * bx + bx); thread (tx, ty) walks pixels ty, ty + by, ... of group
// tile * bx + tx, writes dz and (kSum) keeps V fp32 sums, which the block then adds over ty
// in a fixed order into partial[c * chunks + chunk].
template <typename T, int V, bool kSum>
__global__ void relu_bias_bwd_nhwc_kernel(int pixels, int hw, int groups, int per, NhwcArgs ya,
                                          const T* __restrict__ y, const T* dy, bool relu, NhwcArgs za, T* dz,
                                          float* __restrict__ partial) {
  extern __shared__ float red[];  // [blockDim.y][blockDim.x * V]
  const int chunk = blockIdx.x;
  const int g = blockIdx.y * blockDim.x + threadIdx.x;
  const int p0 = chunk * per, p1 = min(pixels, p0 + per);
  float sum[V];
#pragma unroll
  for (int e = 0; e < V; ++e) sum[e] = 0.f;
  if (g < groups) {
    const int c = g * V;
    for (int p = p0 + threadIdx.y; p < p1; p += blockDim.y) {
      const int n = p / hw, i = p - n * hw;
      const long long yo = n * ya.ns + static_cast<long long>(i) * ya.pix + c;
      Pack<T, V> d = *reinterpret_cast<const Pack<T, V>*>(dy + yo);
      if (relu) {
        const Pack<T, V> yv = *reinterpret_cast<const Pack<T, V>*>(y + yo);
#pragma unroll
        for (int e = 0; e < V; ++e)
          if (!(to_f32(yv.v[e]) > 0.f)) d.v[e] = from_f32<T>(0.f);
      }
      if (relu || dz != dy)
        *reinterpret_cast<Pack<T, V>*>(dz + n * za.ns + static_cast<long long>(i) * za.pix + c) = d;
      if (kSum) {
#pragma unroll
        for (int e = 0; e < V; ++e) sum[e] += to_f32(d.v[e]);
      }
    }
  }
  if (!kSum) return;
  const int row = blockDim.x * V;
#pragma unroll
  for (int e = 0; e < V; ++e) red[threadIdx.y * row + threadIdx.x * V + e] = sum[e];
  __syncthreads();
  // Threads of row 0 add the rows in order, one channel each (V per thread).
  if (threadIdx.y == 0 && g < groups) {
    for (int e = 0; e < V; ++e) {
      float t = 0.f;
      for (int r = 0; r < static_cast<int>(blockDim.y); ++r) t += red[r * row + threadIdx.x * V + e];
      partial[static_cast<long long>(g * V + e) * gridDim.x + chunk] = t;
    }
  }
}

// Pass 2 for many chunks (the channels-last tiling makes up to ~1000 per channel): one warp
// per channel, lane l adds chunks l, l + 32, ... and a fixed shuffle tree adds the lanes:
// the same order every run (deterministic), 32x less serial latency than a thread per channel.
template <typename T>
__global__ void bias_grad_finish_warp_kernel(int c_dim, int chunks, const float* __restrict__ partial,
                                             T* db) {
  const int c = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (c >= c_dim) return;
  float sum = 0.f;
  for (int k = lane; k < chunks; k += 32) sum += partial[static_cast<long long>(c) * chunks + k];
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) db[c] = from_f32<T>(to_f32(db[c]) + sum);
}

// Blocks of the split bias reduction: 8 per SM of the current device (1056 on a 132-SM H100).
// The chunking, and so the order of the partial sums, depends on it: fixed per device, so
// the result is deterministic on a given GPU, and the scratch sizes below must be taken
// with the device that runs the launch current.
constexpr int kBlocksPerSm = 8;
inline int target_blocks() {
  return kBlocksPerSm * sm_count();
}

// Images per chunk of the split reduction: about target_blocks() blocks in all.
inline int images_per_chunk(const Nchw& s) {
  const int chunks = std::max(1, std::min(s.n, (target_blocks() + s.c - 1) / s.c));
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
void relu_fwd(const Nchw& s, const T* x, T* y, cudaStream_t stream) {
  if (s.count() == 0) return;
  if (s.h * s.w < 64) {
    relu_flat_kernel<T><<<grid_for(s.count(), kThreads), kThreads, 0, stream>>>(
        s.count(), s.image(), s.nstride(), x, nullptr, y, false, false);
    KERNEL_CHECK("relu_flat_kernel");
    return;
  }
  relu_fwd_kernel<T><<<plane_grid(s), plane_threads(s), 0, stream>>>(s.c, s.h * s.w, s.nstride(), x, y);
  KERNEL_CHECK("relu_fwd_kernel");
}

template <typename T>
void relu_bwd(const Nchw& s, const T* y, const T* dy, T* dx, bool accumulate, cudaStream_t stream) {
  if (s.count() == 0) return;
  if (s.h * s.w < 64) {
    relu_flat_kernel<T><<<grid_for(s.count(), kThreads), kThreads, 0, stream>>>(
        s.count(), s.image(), s.nstride(), y, dy, dx, true, accumulate);
    KERNEL_CHECK("relu_flat_kernel");
    return;
  }
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

// ---- channels-last launchers -------------------------------------------------------------------

namespace {

// Vector width for views whose channel count, pixel strides and pointers allow 16-byte access.
template <typename T>
bool nhwc_vector_ok(const Nchw& a, const void* pa, const Nchw& b, const void* pb) {
  constexpr int v = kVec16<T>;
  return a.c % v == 0 && nhwc_args(a).pix % v == 0 && nhwc_args(b).pix % v == 0 && a.nstride() % v == 0 &&
         b.nstride() % v == 0 && aligned16(pa) && aligned16(pb);
}

struct RbTiling {
  int groups, bx, by, tiles, per, chunks;
};
template <int V>
RbTiling rb_tiling(const Nchw& s) {
  RbTiling t;
  t.groups = s.c / V;
  t.bx = std::min(t.groups, 32);
  t.by = std::max(1, 256 / t.bx);
  t.tiles = (t.groups + t.bx - 1) / t.bx;
  const int pixels = s.n * s.h * s.w;
  const int max_chunks = std::max(1, (pixels + t.by - 1) / t.by);
  t.chunks = std::max(1, std::min(max_chunks, target_blocks() / t.tiles));
  t.per = (pixels + t.chunks - 1) / t.chunks;
  t.chunks = (pixels + t.per - 1) / t.per;
  return t;
}

template <typename T, int V>
void launch_relu_bias_bwd_nhwc(const Nchw& ys, const T* y, const T* dy, bool relu, const Nchw& zs, T* dz,
                               T* db, float* partial, cudaStream_t stream) {
  const RbTiling t = rb_tiling<V>(ys);
  const dim3 grid(t.chunks, t.tiles), block(t.bx, t.by);
  const int pixels = ys.n * ys.h * ys.w;
  if (db) {
    const std::size_t smem = std::size_t(t.bx) * t.by * V * sizeof(float);
    relu_bias_bwd_nhwc_kernel<T, V, true><<<grid, block, smem, stream>>>(
        pixels, ys.h * ys.w, t.groups, t.per, nhwc_args(ys), y, dy, relu, nhwc_args(zs), dz, partial);
    KERNEL_CHECK("relu_bias_bwd_nhwc_kernel");
    bias_grad_finish_warp_kernel<T><<<(ys.c + 7) / 8, 256, 0, stream>>>(ys.c, t.chunks, partial, db);
    KERNEL_CHECK("bias_grad_finish_warp_kernel");
  } else {
    relu_bias_bwd_nhwc_kernel<T, V, false><<<grid, block, 0, stream>>>(
        pixels, ys.h * ys.w, t.groups, t.per, nhwc_args(ys), y, dy, relu, nhwc_args(zs), dz, nullptr);
    KERNEL_CHECK("relu_bias_bwd_nhwc_kernel");
  }
}

}  // namespace

template <typename T>
void bias_relu_copy_nhwc(const Nchw& zs, const T* z, const T* bias, bool relu, const Nchw& ys, T* y,
                         cudaStream_t stream) {
  if (zs.n != ys.n || zs.c != ys.c || zs.h != ys.h || zs.w != ys.w)
    throw Error("bias_relu_copy_nhwc: the two views differ in shape");
  check_nhwc_view(zs, "bias_relu_copy_nhwc");
  check_nhwc_view(ys, "bias_relu_copy_nhwc");
  if (ys.count() == 0) return;
  const int hw = ys.h * ys.w;
  if (nhwc_vector_ok<T>(zs, z, ys, y)) {
    constexpr int V = kVec16<T>;
    const unsigned total = static_cast<unsigned>(ys.count() / V);
    bias_relu_copy_nhwc_kernel<T, V><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
        total, ys.c / V, hw, nhwc_args(zs), z, bias, relu, nhwc_args(ys), y);
  } else {
    const unsigned total = static_cast<unsigned>(ys.count());
    bias_relu_copy_nhwc_kernel<T, 1><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
        total, ys.c, hw, nhwc_args(zs), z, bias, relu, nhwc_args(ys), y);
  }
  KERNEL_CHECK("bias_relu_copy_nhwc_kernel");
}

template <typename T>
void bias_relu_fwd_nhwc(const Nchw& s, const T* bias, bool relu, T* y, cudaStream_t stream) {
  bias_relu_copy_nhwc<T>(s, y, bias, relu, s, y, stream);
}

std::size_t relu_bias_bwd_nhwc_scratch(const Nchw& s) {
  if (s.count() == 0) return 0;
  // The larger of the two tilings (vector or scalar), so either launch fits.
  const RbTiling a = rb_tiling<1>(s);
  std::size_t need = std::size_t(s.c) * a.chunks;
  if (s.c % 4 == 0) need = std::max(need, std::size_t(s.c) * rb_tiling<4>(s).chunks);
  if (s.c % 8 == 0) need = std::max(need, std::size_t(s.c) * rb_tiling<8>(s).chunks);
  return need;
}

template <typename T>
void relu_bias_bwd_nhwc(const Nchw& ys, const T* y, const T* dy, bool relu, const Nchw& zs, T* dz, T* db,
                        float* partial, cudaStream_t stream) {
  if (zs.n != ys.n || zs.c != ys.c || zs.h != ys.h || zs.w != ys.w)
    throw Error("relu_bias_bwd_nhwc: the two views differ in shape");
  check_nhwc_view(zs, "relu_bias_bwd_nhwc");
  check_nhwc_view(ys, "relu_bias_bwd_nhwc");
  if (ys.count() == 0) return;
  if (db && !partial) throw Error("relu_bias_bwd_nhwc: the bias gradient needs the partial-sum scratch");
  if (nhwc_vector_ok<T>(ys, dy, zs, dz) && aligned16(y))
    launch_relu_bias_bwd_nhwc<T, kVec16<T>>(ys, y, dy, relu, zs, dz, db, partial, stream);
  else
    launch_relu_bias_bwd_nhwc<T, 1>(ys, y, dy, relu, zs, dz, db, partial, stream);
}

#define INCEPT_INSTANTIATE(T)                                                                             \
  template void bias_relu_fwd<T>(const Nchw&, const T*, bool, T*, cudaStream_t);                          \
  template void relu_fwd<T>(const Nchw&, const T*, T*, cudaStream_t);                                     \
  template void relu_bwd<T>(const Nchw&, const T*, const T*, T*, bool, cudaStream_t);                     \
  template void relu_bias_bwd<T>(const Nchw&, const T*, const T*, bool, T*, T*, float*, cudaStream_t);    \
  template void bias_relu_fwd_nhwc<T>(const Nchw&, const T*, bool, T*, cudaStream_t);                     \
  template void bias_relu_copy_nhwc<T>(const Nchw&, const T*, const T*, bool, const Nchw&, T*,            \
                                       cudaStream_t);                                                     \
  template void relu_bias_bwd_nhwc<T>(const Nchw&, const T*, const T*, bool, const Nchw&, T*, T*, float*, \
                                      cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

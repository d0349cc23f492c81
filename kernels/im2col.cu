// Channels-last im2col and row padding kernels (im2col_gpu.h).
#include "engine/check.h"
#include "kernels/im2col_gpu.h"
#include "kernels/nhwc_view.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

struct Im2colArgs {
  int n, c, h, w, ho, wo;
  NhwcArgs x;
  int kh, kw, sh, sw, ph, pw;
  int ld;
};

// One thread per 8 consecutive columns of one row: coalesced 8-element stores (the rows are
// 8-aligned), each tap's (r, s, c) from the column index; the input re-reads hit the caches.
constexpr int kCols = 8;

// Any filter and channel count (the fallback of im2col_rows_kernel below).
template <typename T>
__global__ void im2col_nhwc_kernel(Im2colArgs a, const T* __restrict__ x, T* __restrict__ cols) {
  const int cc = a.c, groups = a.ld / kCols, sc = a.kw * cc, kc = a.kh * sc;
  const long long total = static_cast<long long>(a.n) * a.ho * a.wo * groups;
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long p = j / groups;
    const int j0 = static_cast<int>(j - p * groups) * kCols;
    const int ox = static_cast<int>(p % a.wo);
    const long long q = p / a.wo;
    const int oy = static_cast<int>(q % a.ho), n = static_cast<int>(q / a.ho);
    const T* xn = x + n * a.x.ns;
    Pack<T, kCols> out;
#pragma unroll
    for (int e = 0; e < kCols; ++e) {
      const int t = j0 + e;
      float v = 0.f;
      if (t < kc) {
        const int r = t / sc, rem = t - r * sc;
        const int s = rem / cc, c = rem - s * cc;
        const int iy = oy * a.sh - a.ph + r, ix = ox * a.sw - a.pw + s;
        if (iy >= 0 && iy < a.h && ix >= 0 && ix < a.w)
          v = to_f32(xn[(static_cast<long long>(iy) * a.w + ix) * a.x.pix + c]);
      }
      out.v[e] = from_f32<T>(v);
    }
    *reinterpret_cast<Pack<T, kCols>*>(cols + p * a.ld + j0) = out;
  }
}

// The same for a fixed filter and channel count (conv1: 7x7, C = 3): one block per output row
// (n, oy) stages the kKH input rows it reads, zero-padded, in shared memory, then writes the
// Wo column rows with coalesced 8-element stores; every input element is read from global
// memory about kKH / stride times instead of once per tap.
template <typename T, int kKH, int kKW, int kC>
__global__ void im2col_rows_kernel(Im2colArgs a, const T* __restrict__ x, T* __restrict__ cols) {
  extern __shared__ unsigned char smem_raw[];
  T* rows = reinterpret_cast<T*>(smem_raw);  // [kKH][W + 2 pw][kC]
  constexpr int kSC = kKW * kC, kKc = kKH * kSC, kGroups = (kKc + kCols - 1) / kCols;
  const int wp = a.w + 2 * a.pw;
  const int n = blockIdx.x / a.ho, oy = blockIdx.x - n * a.ho;
  const T* xn = x + n * a.x.ns;
  for (int i = threadIdx.x; i < kKH * wp * kC; i += blockDim.x) {
    const int r = i / (wp * kC), rem = i - r * wp * kC;
    const int px = rem / kC, c = rem - px * kC;
    const int iy = oy * a.sh - a.ph + r, ix = px - a.pw;
    rows[i] = (iy >= 0 && iy < a.h && ix >= 0 && ix < a.w)
                  ? xn[(static_cast<long long>(iy) * a.w + ix) * a.x.pix + c]
                  : from_f32<T>(0.f);
  }
  __syncthreads();
  T* out = cols + static_cast<long long>(blockIdx.x) * a.wo * a.ld;
  for (int i = threadIdx.x; i < a.wo * kGroups; i += blockDim.x) {
    const int ox = i / kGroups, j0 = (i - ox * kGroups) * kCols;
    Pack<T, kCols> v;
#pragma unroll
    for (int e = 0; e < kCols; ++e) {
      const int t = j0 + e;
      if (t < kKc) {
        const int r = t / kSC, rem = t - r * kSC;
        const int s = rem / kC, c = rem - s * kC;
        v.v[e] = rows[(r * wp + ox * a.sw + s) * kC + c];
      } else {
        v.v[e] = from_f32<T>(0.f);
      }
    }
    *reinterpret_cast<Pack<T, kCols>*>(out + static_cast<long long>(ox) * a.ld + j0) = v;
  }
}

template <typename T>
__global__ void pad_rows_kernel(int rows, int src_cols, int dst_cols, const T* __restrict__ src,
                                T* __restrict__ dst) {
  const long long total = static_cast<long long>(rows) * dst_cols;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / dst_cols;
    const int j = static_cast<int>(i - r * dst_cols);
    dst[i] = j < src_cols ? src[r * src_cols + j] : from_f32<T>(0.f);
  }
}

template <typename T>
__global__ void unpad_add_rows_kernel(int rows, int src_cols, int dst_cols, const T* __restrict__ src,
                                      T* dst) {
  const long long total = static_cast<long long>(rows) * dst_cols;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / dst_cols;
    const int j = static_cast<int>(i - r * dst_cols);
    dst[i] = from_f32<T>(to_f32(dst[i]) + to_f32(src[r * src_cols + j]));
  }
}

}  // namespace

template <typename T>
void im2col_nhwc(const Nchw& xs, const T* x, const ConvGeom& g, int ld, T* cols, cudaStream_t stream) {
  check_nhwc_view(xs, "im2col_nhwc");
  if (ld < g.kernel_h * g.kernel_w * xs.c || ld % kCols != 0)
    throw Error("im2col_nhwc: ld must be a multiple of 8 and at least R * S * C");
  if (reinterpret_cast<std::uintptr_t>(cols) % (sizeof(T) * kCols) != 0)
    throw Error("im2col_nhwc: cols must be aligned to 8 elements");
  const Im2colArgs a{xs.n,
                     xs.c,
                     xs.h,
                     xs.w,
                     conv_out_dim(xs.h, g.kernel_h, g.stride_h, g.pad_h),
                     conv_out_dim(xs.w, g.kernel_w, g.stride_w, g.pad_w),
                     nhwc_args(xs),
                     g.kernel_h,
                     g.kernel_w,
                     g.stride_h,
                     g.stride_w,
                     g.pad_h,
                     g.pad_w,
                     ld};
  const std::size_t total = std::size_t(a.n) * a.ho * a.wo * (ld / kCols);
  if (total == 0) return;
  const std::size_t smem = std::size_t(7) * (xs.w + 2 * g.pad_w) * 3 * sizeof(T);
  if (g.kernel_h == 7 && g.kernel_w == 7 && xs.c == 3 && ld == 152 && smem <= 48 * 1024)
    im2col_rows_kernel<T, 7, 7, 3><<<a.n * a.ho, kThreads, smem, stream>>>(a, x, cols);
  else
    im2col_nhwc_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(a, x, cols);
  KERNEL_CHECK("im2col_nhwc_kernel");
}

template <typename T>
void pad_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst, cudaStream_t stream) {
  if (dst_cols < src_cols) throw Error("pad_rows: destination rows are shorter than the source rows");
  if (std::size_t(rows) * dst_cols == 0) return;
  pad_rows_kernel<T><<<grid_for(std::size_t(rows) * dst_cols, kThreads), kThreads, 0, stream>>>(
      rows, src_cols, dst_cols, src, dst);
  KERNEL_CHECK("pad_rows_kernel");
}

template <typename T>
void unpad_add_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst, cudaStream_t stream) {
  if (dst_cols > src_cols) throw Error("unpad_add_rows: destination rows are longer than the source rows");
  if (std::size_t(rows) * dst_cols == 0) return;
  unpad_add_rows_kernel<T><<<grid_for(std::size_t(rows) * dst_cols, kThreads), kThreads, 0, stream>>>(
      rows, src_cols, dst_cols, src, dst);
  KERNEL_CHECK("unpad_add_rows_kernel");
}

#define INCEPT_INSTANTIATE(T)                                                                  \
  template void im2col_nhwc<T>(const Nchw&, const T*, const ConvGeom&, int, T*, cudaStream_t); \
  template void pad_rows<T>(int, int, int, const T*, T*, cudaStream_t);                        \
  template void unpad_add_rows<T>(int, int, int, const T*, T*, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

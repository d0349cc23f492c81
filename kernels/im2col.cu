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

template <typename T>
__global__ void im2col_nhwc_kernel(Im2colArgs a, const T* __restrict__ x, T* __restrict__ cols) {
  const int groups = a.ld / kCols, sc = a.kw * a.c, kc = a.kh * sc;
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
        const int s = rem / a.c, c = rem - s * a.c;
        const int iy = oy * a.sh - a.ph + r, ix = ox * a.sw - a.pw + s;
        if (iy >= 0 && iy < a.h && ix >= 0 && ix < a.w)
          v = to_f32(xn[(static_cast<long long>(iy) * a.w + ix) * a.x.pix + c]);
      }
      out.v[e] = from_f32<T>(v);
    }
    *reinterpret_cast<Pack<T, kCols>*>(cols + p * a.ld + j0) = out;
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

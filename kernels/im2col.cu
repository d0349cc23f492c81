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

// C a multiple of 8 (every GoogLeNet layer but conv1) and ld = R * S * C: each group of 8
// columns is 8 channels of one tap, one vector load and one vector store.
template <typename T>
__global__ void im2col_nhwc_vec_kernel(Im2colArgs a, const T* __restrict__ x, T* __restrict__ cols) {
  const int groups = a.ld / kCols, cg = a.c / kCols;
  const long long total = static_cast<long long>(a.n) * a.ho * a.wo * groups;
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long p = j / groups;
    const int g = static_cast<int>(j - p * groups);
    const int tap = g / cg, c = (g - tap * cg) * kCols;
    const int r = tap / a.kw, s = tap - r * a.kw;
    const int ox = static_cast<int>(p % a.wo);
    const long long q = p / a.wo;
    const int oy = static_cast<int>(q % a.ho), n = static_cast<int>(q / a.ho);
    const int iy = oy * a.sh - a.ph + r, ix = ox * a.sw - a.pw + s;
    Pack<T, kCols> v;
    if (iy >= 0 && iy < a.h && ix >= 0 && ix < a.w) {
      v = *reinterpret_cast<const Pack<T, kCols>*>(x + n * a.x.ns +
                                                   (static_cast<long long>(iy) * a.w + ix) * a.x.pix + c);
    } else {
#pragma unroll
      for (int e = 0; e < kCols; ++e) v.v[e] = from_f32<T>(0.f);
    }
    *reinterpret_cast<Pack<T, kCols>*>(cols + p * a.ld + g * kCols) = v;
  }
}

// col2im, gather form: one thread per (n, iy, ix, V channels) adds the column entries of every
// (output pixel, tap) that read it, in tap order (deterministic, no atomics).
template <typename T, int V>
__global__ void col2im_nhwc_kernel(Im2colArgs a, const T* __restrict__ cols, T* dx, bool accumulate) {
  const int cg = a.c / V;
  const long long total = static_cast<long long>(a.n) * a.h * a.w * cg;
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long pix = j / cg;
    const int c = static_cast<int>(j - pix * cg) * V;
    const int ix = static_cast<int>(pix % a.w);
    const long long q = pix / a.w;
    const int iy = static_cast<int>(q % a.h), n = static_cast<int>(q / a.h);
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = 0.f;
    for (int r = 0; r < a.kh; ++r) {
      const int ty = iy + a.ph - r;
      if (ty < 0 || ty % a.sh != 0 || ty / a.sh >= a.ho) continue;
      const int oy = ty / a.sh;
      for (int s = 0; s < a.kw; ++s) {
        const int tx = ix + a.pw - s;
        if (tx < 0 || tx % a.sw != 0 || tx / a.sw >= a.wo) continue;
        const int ox = tx / a.sw;
        const long long row = (static_cast<long long>(n) * a.ho + oy) * a.wo + ox;
        const Pack<T, V> v =
            *reinterpret_cast<const Pack<T, V>*>(cols + row * a.ld + (r * a.kw + s) * a.c + c);
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += to_f32(v.v[e]);
      }
    }
    T* d = dx + n * a.x.ns + (static_cast<long long>(iy) * a.w + ix) * a.x.pix + c;
    Pack<T, V> out;
    if (accumulate) out = *reinterpret_cast<const Pack<T, V>*>(d);
#pragma unroll
    for (int e = 0; e < V; ++e) out.v[e] = from_f32<T>(accumulate ? acc[e] + to_f32(out.v[e]) : acc[e]);
    *reinterpret_cast<Pack<T, V>*>(d) = out;
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

namespace {
Im2colArgs im2col_args(const Nchw& xs, const ConvGeom& g, int ld) {
  return Im2colArgs{xs.n,
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
}
bool aligned_to(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}
}  // namespace

template <typename T>
void col2im_nhwc(const Nchw& xs, const T* cols, const ConvGeom& g, int ld, T* dx, bool accumulate,
                 cudaStream_t stream) {
  check_nhwc_view(xs, "col2im_nhwc");
  if (ld < g.kernel_h * g.kernel_w * xs.c) throw Error("col2im_nhwc: ld is shorter than R * S * C");
  const Im2colArgs a = im2col_args(xs, g, ld);
  if (xs.count() == 0) return;
  const bool vec = xs.c % kCols == 0 && ld % kCols == 0 && a.x.pix % kCols == 0 && a.x.ns % kCols == 0 &&
                   aligned_to(cols, sizeof(T) * kCols) && aligned_to(dx, sizeof(T) * kCols);
  if (vec)
    col2im_nhwc_kernel<T, kCols>
        <<<grid_for(std::size_t(xs.count() / kCols), kThreads), kThreads, 0, stream>>>(a, cols, dx,
                                                                                       accumulate);
  else
    col2im_nhwc_kernel<T, 1>
        <<<grid_for(std::size_t(xs.count()), kThreads), kThreads, 0, stream>>>(a, cols, dx, accumulate);
  KERNEL_CHECK("col2im_nhwc_kernel");
}

template <typename T>
void im2col_nhwc(const Nchw& xs, const T* x, const ConvGeom& g, int ld, T* cols, cudaStream_t stream) {
  check_nhwc_view(xs, "im2col_nhwc");
  if (ld < g.kernel_h * g.kernel_w * xs.c || ld % kCols != 0)
    throw Error("im2col_nhwc: ld must be a multiple of 8 and at least R * S * C");
  if (reinterpret_cast<std::uintptr_t>(cols) % (sizeof(T) * kCols) != 0)
    throw Error("im2col_nhwc: cols must be aligned to 8 elements");
  const Im2colArgs a = im2col_args(xs, g, ld);
  const std::size_t total = std::size_t(a.n) * a.ho * a.wo * (ld / kCols);
  if (total == 0) return;
  const std::size_t smem = std::size_t(7) * (xs.w + 2 * g.pad_w) * 3 * sizeof(T);
  if (xs.c % kCols == 0 && ld == g.kernel_h * g.kernel_w * xs.c && a.x.pix % kCols == 0 &&
      a.x.ns % kCols == 0 && aligned_to(x, sizeof(T) * kCols))
    im2col_nhwc_vec_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(a, x, cols);
  else if (g.kernel_h == 7 && g.kernel_w == 7 && xs.c == 3 && ld == 152 && smem <= 48 * 1024)
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

__global__ void flip_filters_kernel(int cout, int kh, int kw, int cin, const float* __restrict__ w,
                                    float* __restrict__ wt) {
  const long long total = static_cast<long long>(cout) * kh * kw * cin;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    // i indexes wt[c][r'][s'][o]
    const int o = static_cast<int>(i % cout);
    const long long q = i / cout;
    const int s2 = static_cast<int>(q % kw), r2 = static_cast<int>(q / kw % kh),
              c = static_cast<int>(q / kw / kh);
    wt[i] = w[((static_cast<long long>(o) * kh + (kh - 1 - r2)) * kw + (kw - 1 - s2)) * cin + c];
  }
}

void flip_filters_nhwc(int cout, int kh, int kw, int cin, const float* w, float* wt, cudaStream_t stream) {
  const std::size_t total = std::size_t(cout) * kh * kw * cin;
  if (total == 0) return;
  flip_filters_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(cout, kh, kw, cin, w, wt);
  KERNEL_CHECK("flip_filters_kernel");
}

#define INCEPT_INSTANTIATE(T)                                                                        \
  template void im2col_nhwc<T>(const Nchw&, const T*, const ConvGeom&, int, T*, cudaStream_t);       \
  template void col2im_nhwc<T>(const Nchw&, const T*, const ConvGeom&, int, T*, bool, cudaStream_t); \
  template void pad_rows<T>(int, int, int, const T*, T*, cudaStream_t);                              \
  template void unpad_add_rows<T>(int, int, int, const T*, T*, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

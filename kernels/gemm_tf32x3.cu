// 3xTF32 fp32 GEMM on tensor cores (gemm_tf32x3_gpu.h).
//
// One CTA of 8 warps computes a BM x BN tile of C (Tf32x3Tile: 64 x 128 and 128 x 128 for wide
// problems, 32 x 128, 16 x 128, 128 x 32 and 64 x 64 for a narrow side), the warps laid out
// WARPS_M x (8 / WARPS_M) over it, stepping k by 32 through a 3-stage cp.async pipeline. Shared
// memory mirrors the global layout of each operand (rows along its contiguous dimension),
// padded so that the per-lane fragment reads of mma.m16n8k8 hit 32 different banks:
//   k-contiguous: [rows][32 + 8]   (lane g, t reads row g, columns 2t, 2t + 1)
//   k-strided:    [32][rows + 4]   (lane g, t reads rows 2g, 2g + 1 at k 2t)
// Each k-tile's 3 x MI x NJ mma per 8 k accumulate into zeroed registers that are added to
// the result with fp32 FADDs at the end of the tile (see the header for why).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/check.h"
#include "engine/error.h"
#include "kernels/device_facts.h"
#include "kernels/gemm_tf32x3_gpu.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
// Below sm_80 (a CUDA 12 build for the P100/V100) the kernel's body is compiled out, as the host
// never launches it there, which leaves its device helpers unreferenced in that pass.
#pragma nv_diag_suppress 177
#endif

namespace incept::kernels {
namespace {

// kBK of k per pipeline stage, 8 warps per CTA. Measured on an H200 (session 12) against 4
// stages, 128-row tiles everywhere, one CTA per SM for 64-row tiles and adding to fp32 every
// second k-tile: all slower.
constexpr int kBK = 32, kStages = 3, kThreads = 256;

// A tile configuration: BM x BN of C per CTA, the 8 warps WARPS_M along m by 8 / WARPS_M along
// n, each owning WM x WN of C as MI x NJ mma tiles of 16 x 8.
template <int BM, int BN, int WARPS_M>
struct TileCfg {
  static constexpr int bm = BM, bn = BN, warps_m = WARPS_M, warps_n = kThreads / 32 / WARPS_M;
  static constexpr int wm = BM / warps_m, wn = BN / warps_n, mi = wm / 16, nj = wn / 8;
  static_assert(warps_m * warps_n * 32 == kThreads && wm * warps_m == BM && wn * warps_n == BN,
                "warp layout");
  static_assert(wm % 16 == 0 && wn % 16 == 0, "whole 16-row m tiles, n tiles in pairs of 8 columns");
  // 2 CTAs per SM (<= 128 registers, 2 x <= 83 KB of shared memory) hide latency, except with
  // the 128 x 128 tile's 64 accumulators per thread
  static constexpr int min_blocks = BM * BN >= 128 * 128 ? 1 : 2;
};
using Tile64x128 = TileCfg<64, 128, 2>;    // a warp: 32 x 32
using Tile128x128 = TileCfg<128, 128, 2>;  // 64 x 32
using Tile32x128 = TileCfg<32, 128, 1>;    // 32 x 16
using Tile16x128 = TileCfg<16, 128, 1>;    // 16 x 16
using Tile128x32 = TileCfg<128, 32, 4>;    // 32 x 16
using Tile64x64 = TileCfg<64, 64, 2>;      // 32 x 16

// Shared tiles. k-contiguous operand: [rows][kBK + 8]; k-strided: [kBK][rows + 4]. The mma's k
// slots are permuted: slot t of an 8-k step is k = 2t, slot t + 4 is k = 2t + 1 (the same for
// A and B, so the sum is unchanged), which makes a lane's two k values adjacent: one 8-byte
// load in a k-contiguous tile (lane g, t at bank 8g + 2t of its half-warp), two 4-byte loads
// in a k-strided one (bank 4(2t) + g). Both are free of bank conflicts.
__host__ __device__ constexpr int tile_ld(int rows, bool k_contig) {
  return k_contig ? kBK + 8 : rows + 4;
}
__host__ __device__ constexpr int tile_floats(int rows, bool k_contig) {
  return k_contig ? rows * tile_ld(rows, true) : kBK * tile_ld(rows, false);
}

template <class T, bool AK, bool BK>
constexpr int smem_bytes() {
  constexpr int pipeline = kStages * (tile_floats(T::bm, AK) + tile_floats(T::bn, BK));
  constexpr int staged_c = (T::bm + 4) * (T::bn + 4);  // either orientation fits
  return (pipeline > staged_c ? pipeline : staged_c) * 4;
}

__device__ __forceinline__ void cp_async16(float* dst, const float* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 16 : 0;  // 0: fill with zeros, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}

// The im2col column after (tr, ts, cc): the next channel, else the next tap.
__device__ __forceinline__ void next_column(const ConvRows& x, int& tr, int& ts, int& cc) {
  if (++cc == x.c) {
    cc = 0;
    if (++ts == x.kw) ts = 0, ++tr;
  }
}

// Copies rows [r0, r0 + rows) x k [k0, k0 + kBK) of an operand into a shared tile. k_contig:
// element (r, l) at g[r * ld + l]; otherwise at g[l * ld + r]. Out-of-range 16-byte chunks are
// zero-filled (the host checked that the contiguous extent is a multiple of 4).
template <int ROWS, bool KC>
__device__ __forceinline__ void load_tile(float* s, const float* g, int ld, int r0, int rows_total, int k0,
                                          int k_total) {
  constexpr int chunks = ROWS * kBK / 4, sld = tile_ld(ROWS, KC);
  static_assert(chunks % kThreads == 0 || chunks < kThreads, "tile chunks per thread");
#pragma unroll
  for (int q = 0; q < (chunks + kThreads - 1) / kThreads; ++q) {
    const int c = q * kThreads + threadIdx.x;
    if (chunks < kThreads && c >= chunks) break;  // a 16-row tile: half the threads copy
    if constexpr (KC) {
      const int r = c / (kBK / 4), l4 = (c % (kBK / 4)) * 4;
      const bool ok = r0 + r < rows_total && k0 + l4 < k_total;
      const float* src = ok ? g + static_cast<long long>(r0 + r) * ld + (k0 + l4) : g;
      cp_async16(s + r * sld + l4, src, ok);
    } else {
      const int l = c / (ROWS / 4), r4 = (c % (ROWS / 4)) * 4;
      const bool ok = k0 + l < k_total && r0 + r4 < rows_total;
      const float* src = ok ? g + static_cast<long long>(k0 + l) * ld + (r0 + r4) : g;
      cp_async16(s + l * sld + r4, src, ok);
    }
  }
}

// One chunk of implicit rows into dst: the 4 columns from tap (r, t), channel ch on, of the
// output pixel whose window starts at (iy0, ix0) in the image at x.x + off (zeros where the
// tap falls in the padding, past the taps, or the pixel is not live).
template <bool VEC>
__device__ __forceinline__ void copy_rows_chunk(float* dst, const ConvRows& x, int off, int iy0, int ix0,
                                                bool live, int r, int t, int ch) {
#pragma unroll
  for (int e = 0; e < (VEC ? 1 : 4); ++e) {
    const int iy = iy0 + r, ix = ix0 + t;
    const bool ok = live && r < x.kh && static_cast<unsigned>(iy) < static_cast<unsigned>(x.h) &&
                    static_cast<unsigned>(ix) < static_cast<unsigned>(x.w);
    const float* src = ok ? x.x + off + (static_cast<long long>(iy) * x.w + ix) * x.pixel_stride + ch : x.x;
    if constexpr (VEC) {
      cp_async16(dst, src, ok);
    } else {
      cp_async4(dst + e, src, ok);
      next_column(x, r, t, ch);
    }
  }
}

// B as a convolution's im2col rows read in place (GemmProblem::rows), a tile of ROWS pixels: a
// thread's ROWS / 32 chunks of each k-tile are as many output pixels (tile rows q * 32 + tid / 8,
// fixed over the k loop) at the same 4 columns (tid % 8), i.e. the same tap and channels; the
// tap advances with the k-tile.
// Taps in the padding and pixels past n are zero-filled. VEC (c % 4 == 0, 16-byte aligned
// pixels): a chunk is 4 channels of one tap, one 16-byte copy; otherwise (conv1's 3 channels)
// each of its 4 columns is decoded and copied alone.
template <bool VEC, int ROWS>
struct RowsCursor {
  static constexpr int Q = ROWS * kBK / 4 / kThreads;
  static_assert(ROWS % 32 == 0, "whole chunks per thread");
  int off[Q], ih0[Q], iw0[Q];  // per pixel: its image's offset, window origin (ih0 < -h: none)
  int tr, ts, cc;              // tap row, tap column and channel of the thread's columns
  __device__ void init(const ConvRows& x, int n0, int n) {
    const int col = (threadIdx.x % (kBK / 4)) * 4;
#pragma unroll
    for (int q = 0; q < Q; ++q) {
      const int pix = n0 + q * (kThreads / (kBK / 4)) + threadIdx.x / (kBK / 4);
      const int hw = x.oh * x.ow, img = pix / hw, rem = pix - img * hw, oy = rem / x.ow, ox = rem - oy * x.ow;
      off[q] = static_cast<int>(img * x.image_stride);
      ih0[q] = pix < n ? oy * x.sh - x.ph : -(1 << 29);
      iw0[q] = ox * x.sw - x.pw;
    }
    const int tap = col / x.c;
    cc = col - tap * x.c, tr = tap / x.kw, ts = tap - tr * x.kw;
  }
  // Issues the chunks of the next k-tile and moves on by kBK columns.
  __device__ void load(float* s, const ConvRows& x) {
    const int col = (threadIdx.x % (kBK / 4)) * 4;
#pragma unroll
    for (int q = 0; q < Q; ++q) {
      float* dst = s + (q * (kThreads / (kBK / 4)) + threadIdx.x / (kBK / 4)) * tile_ld(ROWS, true) + col;
      copy_rows_chunk<VEC>(dst, x, off[q], ih0[q], iw0[q], true, tr, ts, cc);
    }
    cc += kBK;
    while (cc >= x.c) {
      cc -= x.c;
      if (++ts == x.kw) ts = 0, ++tr;
    }
  }
};

// The same rows as a k-strided B tile (a weight gradient, after the launcher's swap: k runs
// over pixels, the tile's ROWS rows over im2col columns). A thread's ROWS / 32 chunks are 4
// columns of one 16-byte group (fixed: one tap, 4 channels) at as many pixels (q * 1024 / ROWS
// + tid / (ROWS / 4) of the k-tile) that advance by kBK pixels per k-tile. Pixels are those of
// batch entry z: z * k + [0, k).
template <bool VEC, int ROWS>
struct RowsCursorKs {
  static constexpr int Q = ROWS * kBK / 4 / kThreads;
  static_assert(ROWS % 32 == 0, "whole chunks per thread");
  int off[Q], oy[Q], ox[Q];  // per chunk: its pixel's image offset and output position
  int left[Q];               // pixels of the entry left from this chunk's pixel on
  int tr, ts, cc;            // the thread's tap row (kh: none), tap column, first channel
  __device__ void init(const ConvRows& x, int n0, int n, int z, int k) {
    const int col = n0 + (threadIdx.x % (ROWS / 4)) * 4;
    const int tap = col / x.c;
    cc = col - tap * x.c, tr = col < n ? tap / x.kw : x.kh, ts = tap - (tap / x.kw) * x.kw;
    const int hw = x.oh * x.ow;
#pragma unroll
    for (int q = 0; q < Q; ++q) {
      const int l = q * (kThreads / (ROWS / 4)) + threadIdx.x / (ROWS / 4);
      const long long pix = static_cast<long long>(z) * k + l;
      const int img = static_cast<int>(pix / hw),
                rem = static_cast<int>(pix - static_cast<long long>(img) * hw);
      off[q] = static_cast<int>(img * x.image_stride);
      oy[q] = rem / x.ow, ox[q] = rem - oy[q] * x.ow;
      left[q] = k - l;
    }
  }
  __device__ void load(float* s, const ConvRows& x) {
    const int col4 = (threadIdx.x % (ROWS / 4)) * 4;
#pragma unroll
    for (int q = 0; q < Q; ++q) {
      const int l = q * (kThreads / (ROWS / 4)) + threadIdx.x / (ROWS / 4);
      float* dst = s + l * tile_ld(ROWS, false) + col4;
      copy_rows_chunk<VEC>(dst, x, off[q], oy[q] * x.sh - x.ph, ox[q] * x.sw - x.pw, left[q] > 0, tr, ts, cc);
      left[q] -= kBK;  // on to the same chunk of the next k-tile: kBK pixels later
      ox[q] += kBK;
      while (ox[q] >= x.ow) {
        ox[q] -= x.ow;
        if (++oy[q] == x.oh) oy[q] = 0, off[q] += static_cast<int>(x.image_stride);
      }
    }
  }
};

// k-contiguous tile: row r's values at k and k + 1 (mma k slots t and t + 4 when k = kk + 2t).
template <int ROWS>
__device__ __forceinline__ float2 kc_pair(const float* s, int r, int k) {
  return *reinterpret_cast<const float2*>(s + r * tile_ld(ROWS, true) + k);
}
// k-strided tile: rows r and r + 1 at k. There the mma's rows (or columns) are paired instead:
// fragment row g is tile row 2g and row g + 8 is 2g + 1 (for B: column g of n-tiles j and j + 1
// are tile columns 2g and 2g + 1 of their 16), so one 8-byte load serves two fragment values
// (bank 4(2t) + 2g of the half-warp: no conflicts); the epilogue maps the rows back.
template <int ROWS>
__device__ __forceinline__ float2 ks_pair(const float* s, int r, int k) {
  return *reinterpret_cast<const float2*>(s + k * tile_ld(ROWS, false) + r);
}

struct Split {
  std::uint32_t big, small;
};
// big: x rounded to TF32 (10 mantissa bits, ties away from zero) by integer arithmetic, small:
// the exact rest (the tensor cores read its top 19 bits). inf gives small = NaN (inf - inf).
__device__ __forceinline__ Split split(float x) {
  const std::uint32_t big = (__float_as_uint(x) + 0x1000u) & 0xFFFFE000u;
  return {big, __float_as_uint(x - __uint_as_float(big))};
}

// d = a b, without reading d (the first product of a k-tile: no zeroing of the accumulators).
__device__ __forceinline__ void mma_tf32_first(float (&d)[4], const std::uint32_t (&a)[4],
                                               const std::uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%10,%10,%10};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(0.f));
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const std::uint32_t (&a)[4],
                                         const std::uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <class T, bool AK, bool BK, int IMPL>  // IMPL: 0 B is a matrix, 1 rows (VEC), 2 rows (scalar)
__global__ void __launch_bounds__(kThreads, T::min_blocks) gemm_tf32x3_kernel(GemmProblem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int BM = T::bm, BN = T::bn, MI = T::mi, NJ = T::nj;
  extern __shared__ __align__(16) float smem[];
  float* sa = smem;
  float* sb = smem + kStages * tile_floats(BM, AK);

  const int z = blockIdx.z;
  const float* a = p.a + z * p.stride_a;
  const float* b = p.b + z * p.stride_b;
  float* c = p.c + z * p.stride_c;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp % T::warps_m) * T::wm, wn = (warp / T::warps_m) * T::wn;
  const int g = lane / 4, t = lane % 4;
  const int ktiles = (p.k + kBK - 1) / kBK;

  float acc[MI][NJ][4] = {};
  float part[MI][NJ][4] = {};
  // Implicit rows: a k-contiguous B (forward) or a k-strided one (a weight gradient).
  std::conditional_t<BK, RowsCursor<IMPL == 1, BN>, RowsCursorKs<IMPL == 1, BN>> rows;
  if constexpr (IMPL && BK) rows.init(p.rows, n0, p.n);
  if constexpr (IMPL && !BK) rows.init(p.rows, n0, p.n, z, p.k);
  auto load = [&](int stage, int kt) {  // called for kt = 0, 1, 2, ... in order
    load_tile<BM, AK>(sa + stage * tile_floats(BM, AK), a, p.lda, m0, p.m, kt * kBK, p.k);
    if constexpr (IMPL)
      rows.load(sb + stage * tile_floats(BN, BK), p.rows);
    else
      load_tile<BN, BK>(sb + stage * tile_floats(BN, BK), b, p.ldb, n0, p.n, kt * kBK, p.k);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load(s, s);
    asm volatile("cp.async.commit_group;\n" ::);
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
    __syncthreads();
    if (kt + kStages - 1 < ktiles) load((kt + kStages - 1) % kStages, kt + kStages - 1);
    asm volatile("cp.async.commit_group;\n" ::);

    const float* ta = sa + (kt % kStages) * tile_floats(BM, AK);
    const float* tb = sb + (kt % kStages) * tile_floats(BN, BK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 8) {
      std::uint32_t ab[MI][4], as[MI][4], bb[NJ][2], bs[NJ][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        float v[4];  // a0 (row g, slot t), a1 (row g + 8, slot t), a2 (g, t + 4), a3 (g + 8, t + 4)
        if constexpr (AK) {
          const float2 lo = kc_pair<BM>(ta, wm + i * 16 + g, kk + 2 * t),
                       hi = kc_pair<BM>(ta, wm + i * 16 + g + 8, kk + 2 * t);
          v[0] = lo.x, v[1] = hi.x, v[2] = lo.y, v[3] = hi.y;
        } else {
          const float2 k0 = ks_pair<BM>(ta, wm + i * 16 + 2 * g, kk + 2 * t),
                       k1 = ks_pair<BM>(ta, wm + i * 16 + 2 * g, kk + 2 * t + 1);
          v[0] = k0.x, v[1] = k0.y, v[2] = k1.x, v[3] = k1.y;
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const Split s = split(v[e]);
          ab[i][e] = s.big;
          as[i][e] = s.small;
        }
      }
#pragma unroll
      for (int j = 0; j < NJ; j += 2) {
        float v[2][2];  // [n-tile j, j + 1][b0 (slot t, column g), b1 (slot t + 4, column g)]
        if constexpr (BK) {
          const float2 p0 = kc_pair<BN>(tb, wn + j * 8 + g, kk + 2 * t),
                       p1 = kc_pair<BN>(tb, wn + j * 8 + 8 + g, kk + 2 * t);
          v[0][0] = p0.x, v[0][1] = p0.y, v[1][0] = p1.x, v[1][1] = p1.y;
        } else {
          const float2 k0 = ks_pair<BN>(tb, wn + j * 8 + 2 * g, kk + 2 * t),
                       k1 = ks_pair<BN>(tb, wn + j * 8 + 2 * g, kk + 2 * t + 1);
          v[0][0] = k0.x, v[1][0] = k0.y, v[0][1] = k1.x, v[1][1] = k1.y;
        }
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const Split s = split(v[h][e]);
            bb[j + h][e] = s.big;
            bs[j + h][e] = s.small;
          }
      }
      // Term by term over all MI x NJ tiles, so that consecutive mma never wait on each other's
      // accumulator.
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
          if (kk == 0)  // the tile's first product: part holds the previous tile's, already added
            mma_tf32_first(part[i][j], as[i], bb[j]);
          else
            mma_tf32(part[i][j], as[i], bb[j]);
        }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) mma_tf32(part[i][j], ab[i], bs[j]);
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) mma_tf32(part[i][j], ab[i], bb[j]);
    }
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] += part[i][j][e];
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  __syncthreads();  // the pipeline's shared memory now stages C

  // The tile goes through shared memory so that global C is written (and, with beta, read) in
  // 16-byte vectors along its contiguous dimension: rows (column-major C) or, with
  // c_row_major, columns. Fragment c0, c1: row g, columns 2t, 2t+1; c2, c3: row g + 8; mapped
  // back to tile rows and columns where the operand tiles paired them (k-strided operands).
  const bool rm = p.c_row_major;
  const int cld = rm ? BN + 4 : BM + 4;  // staged tile: [BN][BM + 4], or [BM][BN + 4] row-major
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int fc = 2 * t + e % 2;  // fragment column
        const int row = wm + i * 16 + (AK ? g + (e / 2) * 8 : 2 * g + e / 2);
        const int col = wn + (BK ? j * 8 + fc : (j / 2) * 16 + 2 * fc + j % 2);
        smem[rm ? row * cld + col : col * cld + row] = acc[i][j][e];
      }
  __syncthreads();
  // Contiguous extent of the tile in C (rows, or columns when row-major) and the other one.
  const int inner = rm ? BN : BM, outer = rm ? BM : BN;
  const int inner0 = rm ? n0 : m0, outer0 = rm ? m0 : n0;
  const int inner_n = rm ? p.n : p.m, outer_n = rm ? p.m : p.n;
  const bool vec = inner_n % 4 == 0 && p.ldc % 4 == 0 && p.stride_c % 4 == 0 &&
                   reinterpret_cast<std::uintptr_t>(p.c) % 16 == 0;
  auto finish = [&](float v, int row) {
    if (p.bias) v += p.bias[row];
    return p.relu ? fmaxf(v, 0.f) : v;
  };
  if (vec) {
    for (int q = threadIdx.x; q < inner * outer / 4; q += kThreads) {
      const int o = q / (inner / 4), i4 = (q % (inner / 4)) * 4;
      if (inner0 + i4 >= inner_n || outer0 + o >= outer_n) continue;
      const float4 v = *reinterpret_cast<const float4*>(smem + o * cld + i4);
      float4* out = reinterpret_cast<float4*>(c + static_cast<long long>(outer0 + o) * p.ldc + inner0 + i4);
      float r[4] = {p.alpha * v.x, p.alpha * v.y, p.alpha * v.z, p.alpha * v.w};
      if (p.beta != 0.f) {
        const float4 old = *out;
        r[0] += p.beta * old.x, r[1] += p.beta * old.y, r[2] += p.beta * old.z, r[3] += p.beta * old.w;
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) r[e] = finish(r[e], rm ? m0 + o : m0 + i4 + e);
      *out = make_float4(r[0], r[1], r[2], r[3]);
    }
  } else {
    for (int q = threadIdx.x; q < inner * outer; q += kThreads) {
      const int o = q / inner, ii = q % inner;
      if (inner0 + ii >= inner_n || outer0 + o >= outer_n) continue;
      float* out = c + static_cast<long long>(outer0 + o) * p.ldc + inner0 + ii;
      float v = p.alpha * smem[o * cld + ii];
      if (p.beta != 0.f) v += p.beta * *out;
      *out = finish(v, rm ? m0 + o : m0 + ii);
    }
  }
#else
  __trap();  // the host never launches it below sm_80 (tf32x3_supported)
#endif
}

template <class T, bool AK, bool BK, int IMPL = 0>
void launch(const GemmProblem& p, cudaStream_t stream) {
  constexpr int bytes = smem_bytes<T, AK, BK>();
  CUDA_CHECK(cudaFuncSetAttribute(gemm_tf32x3_kernel<T, AK, BK, IMPL>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  const dim3 grid((p.m + T::bm - 1) / T::bm, (p.n + T::bn - 1) / T::bn, p.batch);
  gemm_tf32x3_kernel<T, AK, BK, IMPL><<<grid, kThreads, bytes, stream>>>(p);
  KERNEL_CHECK("gemm_tf32x3_kernel");
}

bool aligned16(const void* ptr) {
  return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
}
// Whole 16-byte chunks of 4 channels: one copy per chunk.
bool rows_vector(const ConvRows& r) {
  return r.c % 4 == 0 && r.pixel_stride % 4 == 0 && r.image_stride % 4 == 0 && aligned16(r.x);
}

template <class T>
void launch_layouts(const GemmProblem& p, cudaStream_t stream) {
  // A's k is contiguous for op(A) = A^T (cuBLAS column-major), B's for op(B) = B.
  const bool ak = p.trans_a, bk = !p.trans_b;
  if (p.rows.x) {  // implicit im2col rows as B (oriented() put them there)
    // a forward or flipped data gradient (A = filters^T, k-contiguous rows) or a weight
    // gradient (A = dy, rows k-strided); tf32x3_supported() admits no other layout
    if (ak != bk) throw Error("gemm_tf32x3: implicit rows in an unsupported layout");
    if (rows_vector(p.rows)) {
      if (ak)
        launch<T, true, true, 1>(p, stream);
      else
        launch<T, false, false, 1>(p, stream);
    } else {
      if (ak)
        launch<T, true, true, 2>(p, stream);
      else
        launch<T, false, false, 2>(p, stream);
    }
    return;
  }
  if (ak && bk) launch<T, true, true>(p, stream);
  if (ak && !bk) launch<T, true, false>(p, stream);
  if (!ak && bk) launch<T, false, true>(p, stream);
  if (!ak && !bk) launch<T, false, false>(p, stream);
}

struct TileInfo {
  Tf32x3Tile tile;
  int bm, bn;
  double speed;  // its rate on whole tiles relative to 64 x 128 (bench_kernels --fp32-gemm-math)
  void (*run)(const GemmProblem&, cudaStream_t);
};
template <class T>
constexpr TileInfo tile_info(Tf32x3Tile tile, double speed) {
  return {tile, T::bm, T::bn, speed, &launch_layouts<T>};
}
// Measured on the step's GEMMs (H200, session 13): 128 x 128 wins some weight gradients by
// 3-6 % and loses data gradients by 4-8 % (and a 112-row forward by 18 %), so it needs to fill
// its tiles better than 64 x 128 to be taken; the narrow tiles run whole tiles at 0.6-0.85 of
// 64 x 128's rate.
constexpr TileInfo kTiles[] = {
    tile_info<Tile64x128>(Tf32x3Tile::k64x128, 1.0),  tile_info<Tile128x128>(Tf32x3Tile::k128x128, 0.97),
    tile_info<Tile32x128>(Tf32x3Tile::k32x128, 0.82), tile_info<Tile16x128>(Tf32x3Tile::k16x128, 0.61),
    tile_info<Tile128x32>(Tf32x3Tile::k128x32, 0.72), tile_info<Tile64x64>(Tf32x3Tile::k64x64, 0.83),
};

// The share of ideal whole-64 x 128-tile throughput that tile t gets on C (m x n, batch): the
// tiles' area inside C, their speed, and the SMs left idle by grids of fewer CTAs than SMs.
double tile_efficiency(const TileInfo& t, int m, int n, int batch) {
  const long long mt = (m + t.bm - 1) / t.bm, nt = (n + t.bn - 1) / t.bn;
  const double fill = std::min(1.0, double(mt * nt * batch) / sm_count());
  return double(m) / double(mt * t.bm) * double(n) / double(nt * t.bn) * t.speed * fill;
}

// The forced tile, else the most efficient one (the first of equals: 64 x 128 on a tie).
const TileInfo& choose_tile(const GemmProblem& q) {
  const TileInfo* best = &kTiles[0];
  for (const TileInfo& t : kTiles) {
    if (t.tile == q.tile) return t;
    if (q.tile == Tf32x3Tile::kAuto &&
        tile_efficiency(t, q.m, q.n, q.batch) > tile_efficiency(*best, q.m, q.n, q.batch))
      best = &t;
  }
  return *best;
}

double best_efficiency(const GemmProblem& q) {
  return tile_efficiency(choose_tile(q), q.m, q.n, q.batch);
}

}  // namespace

namespace {
// The problem as launched: C^T = op(B)^T op(A)^T, written row-major into C's memory, where its
// tiles cost less (a weight gradient's 192 output channels use 75% of two 128-wide tiles; as
// rows they fill three 64-row tiles). Not with a bias (it is per row of C).
GemmProblem oriented(const GemmProblem& p) {
  if (!p.rows_are_a) {
    if (p.bias || p.c_row_major || p.rows.x) return p;
    GemmProblem t = p;
    std::swap(t.m, t.n);
    if (best_efficiency(t) <= best_efficiency(p) * 1.05) return p;
  }
  // (rows of A are always moved to B: the kernel reads implicit rows as its B tile)
  GemmProblem q = p;
  q.rows_are_a = false;
  q.trans_a = !p.trans_b, q.trans_b = !p.trans_a, q.m = p.n, q.n = p.m;
  q.a = p.b, q.lda = p.ldb, q.stride_a = p.stride_b;
  q.b = p.a, q.ldb = p.lda, q.stride_b = p.stride_a;
  q.c_row_major = true;
  return q;
}
}  // namespace

bool tf32x3_supported(const GemmProblem& p) {
  if (p.m < 16 || p.n < 16 || p.k < 1 || p.batch < 1 || p.batch > 65535) return false;
  if (const ConvRows& r = p.rows; r.x) {
    if (r.c < 1 || r.oh < 1 || r.ow < 1 || reinterpret_cast<std::uintptr_t>(r.x) % 4) return false;
    const long long hw = static_cast<long long>(r.oh) * r.ow,
                    taps_c = static_cast<long long>(r.kh) * r.kw * r.c;
    const long long pixels = p.rows_are_a ? static_cast<long long>(p.k) * p.batch : p.n;
    if (pixels % hw || (pixels / hw + 1) * r.image_stride > (1LL << 31) - 1) return false;  // 32-bit offsets
    if (p.rows_are_a) {  // A = rows^T (op N), B = op(B) (op T): a weight gradient
      // (columns past taps_c, rows padded to an aligned length, read as zeros)
      if (p.trans_a || !p.trans_b || p.m < taps_c) return false;
      if (!aligned16(p.b) || p.ldb % 4 || p.stride_b % 4 || p.n % 4) return false;
    } else {  // B = rows (op N), A = filters^T (op T): a forward or a flipped data gradient
      if (!p.trans_a || p.trans_b || p.batch != 1 || p.k < taps_c) return false;
      if (!aligned16(p.a) || p.lda % 4 || p.k % 4) return false;
    }
  } else {
    if (!aligned16(p.a) || !aligned16(p.b)) return false;
    if (p.lda % 4 || p.ldb % 4 || p.stride_a % 4 || p.stride_b % 4) return false;
    // the contiguous extent of each operand: whole 16-byte chunks, so a chunk is all in or all out
    if ((p.trans_a ? p.k : p.m) % 4 || (p.trans_b ? p.n : p.k) % 4) return false;
  }
  if (compute_capability() < 80) return false;
  const GemmProblem q = oriented(p);
  const TileInfo& t = choose_tile(q);
  return (q.n + t.bn - 1) / t.bn <= 65535;  // grid.y
}

bool tf32x3_preferred(const GemmProblem& p) {
  if (!tf32x3_supported(p) || p.k < 64) return false;
  // the launched tiles at least 45 % as productive as whole 64 x 128 tiles on every SM
  return best_efficiency(oriented(p)) >= 0.45;
}

Tf32x3Tile tf32x3_tile(const GemmProblem& p, bool* transposed) {
  const GemmProblem q = oriented(p);
  if (transposed) *transposed = q.c_row_major && !p.c_row_major;
  return choose_tile(q).tile;
}

void gemm_tf32x3(const GemmProblem& p0, cudaStream_t stream) {
  if (!tf32x3_supported(p0)) throw Error("gemm_tf32x3: problem not supported (check tf32x3_supported first)");
  const GemmProblem p = oriented(p0);
  choose_tile(p).run(p, stream);
}

namespace {
// x's TF32 part (round to nearest, ties away from zero, by the kernel's integer arithmetic) and
// the rest, the rest truncated to TF32 as the tensor cores read it.
void split_ref(float x, double& big, double& small) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  const std::uint32_t r = (u + 0x1000u) & 0xFFFFE000u;
  float fb;
  std::memcpy(&fb, &r, 4);
  float rest = x - fb;
  std::memcpy(&u, &rest, 4);
  u &= 0xFFFFE000u;
  std::memcpy(&rest, &u, 4);
  big = fb;
  small = rest;
}

// Element (k l, pixel j) of the im2col rows that `r` describes, from host memory at r.x.
float conv_row_at(const ConvRows& r, int j, int l) {
  if (l >= r.kh * r.kw * r.c) return 0.f;  // a padding column of the rows
  const int hw = r.oh * r.ow, img = j / hw, oy = (j % hw) / r.ow, ox = j % r.ow;
  const int tap = l / r.c, ch = l % r.c, ty = tap / r.kw, tx = tap % r.kw;
  const int iy = oy * r.sh - r.ph + ty, ix = ox * r.sw - r.pw + tx;
  if (iy < 0 || iy >= r.h || ix < 0 || ix >= r.w) return 0.f;
  return r.x[img * r.image_stride + (static_cast<long long>(iy) * r.w + ix) * r.pixel_stride + ch];
}
}  // namespace

void gemm_tf32x3_ref(const GemmProblem& p, const float* a, const float* b, double* c) {
  for (int j = 0; j < p.n; ++j)
    for (int i = 0; i < p.m; ++i) {
      double sum = 0;
      for (int l = 0; l < p.k; ++l) {
        const float av = p.rows_are_a ? conv_row_at(p.rows, l, i)
                         : p.trans_a  ? a[static_cast<long long>(i) * p.lda + l]
                                      : a[static_cast<long long>(l) * p.lda + i];
        const float bv = p.rows.x && !p.rows_are_a ? conv_row_at(p.rows, j, l)
                         : p.trans_b               ? b[static_cast<long long>(l) * p.ldb + j]
                                                   : b[static_cast<long long>(j) * p.ldb + l];
        double abig, asmall, bbig, bsmall;
        split_ref(av, abig, asmall);
        split_ref(bv, bbig, bsmall);
        sum += asmall * bbig + abig * bsmall + abig * bbig;
      }
      double& out =
          p.c_row_major ? c[static_cast<long long>(i) * p.ldc + j] : c[static_cast<long long>(j) * p.ldc + i];
      double v = p.alpha * sum + (p.beta == 0.f ? 0.0 : p.beta * out);
      if (p.bias) v += p.bias[i];
      out = p.relu ? std::max(v, 0.0) : v;
    }
}

}  // namespace incept::kernels

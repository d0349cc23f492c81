// The quad path of kernels/conv_few_channels_gpu.h (conv1: 3 channels, stride 2), written with
// mma.sync m16n8k16 and ldmatrix (bf16 in, fp32 sums).
//
// Each input pixel becomes a quad of 4 values in shared memory (its C channels, then zeros), so
// a pixel is 8 bytes and, with an even stride, the window of every output pixel starts 16-byte
// aligned: both operands load with ldmatrix (one instruction per 8x8 matrix) instead of one
// 32-bit load per register. Window row r of output pixel px covers the KS * 4 quads from patch
// pixel px * stride_w on (KS = ceil(S / 4)): the taps past S pixels and past C channels have
// zero filter values (forward) or are dropped (weight gradient).
//
// The input rows under a tile are read as aligned 32-bit words (rows of W * C elements must be
// even) into registers a tile ahead, by pixel pairs, and stored after the tile's products as two
// quads per 16-byte store; in the weight gradient a quad's fourth value is 1.0 when C < 4, so
// the column of that channel sums dz: the bias gradient. Patches (and the weight gradient's dz
// tiles) are double-buffered, so a tile costs one barrier. The weight gradient's per-block sums
// are added in two deterministic passes (chunks of blocks, then the chunks).
#include <algorithm>
#include <cstdint>

#include "engine/check.h"
#include "kernels/conv_few_channels_impl.cuh"
#include "kernels/dtype_gpu.h"

namespace incept::kernels::few {
namespace {

constexpr int kPairIters = 2;  // pixel pairs a thread stages per tile: R * px / 2 <= 512
constexpr int kQuadMaxKs = 2;  // S <= 8
constexpr int kQuadMaxNw = 7;  // weight gradient: n8 column tiles per warp (conv1: 28 / 4)

struct QuadArgs {
  FewArgs f;
  int ks;    // k16 steps per window row: ceil(S / 4)
  int px;    // patch pixels per row (even)
  int nt;    // weight gradient: n8 column tiles, R * KS * 2
  int nw;    // and per warp (4 warp columns)
  int w_ld;  // forward filters in shared memory: elements per output channel (R * KS * 16 + 8)
};

QuadArgs make_quad(const FewArgs& f) {
  QuadArgs q{};
  q.f = f;
  q.ks = (f.kw + 3) / 4;
  q.px = ((kTileP - 1) * f.sw + q.ks * 4 + 1) / 2 * 2;
  q.nt = f.kh * q.ks * 2;
  q.nw = (q.nt + 3) / 4;
  q.w_ld = f.kh * q.ks * 16 + 8;
  return q;
}

__host__ __device__ inline int quad_patch_bytes(const QuadArgs& q) {
  return (q.f.kh * q.px * 8 + 127) / 128 * 128;
}
__host__ __device__ inline int quad_filter_bytes(const QuadArgs& q) {
  return (kTileN * q.w_ld * 2 + 127) / 128 * 128;
}
inline int quad_fwd_smem(const QuadArgs& q) {
  return 2 * quad_patch_bytes(q) + quad_filter_bytes(q);
}
inline int quad_wgrad_smem(const QuadArgs& q) {
  return 2 * quad_patch_bytes(q) + 2 * kZBytes;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

__device__ inline void ldsm_x4(std::uint32_t* r, const void* p) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ inline void ldsm_x4_trans(std::uint32_t* r, const void* p) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// A thread's pair slots: slot it is patch row r, quads 2p and 2p + 1 (r << 16 | p; -1: none).
// The same for every tile.
struct PairSlots {
  int rp[kPairIters];
};
__device__ inline PairSlots pair_slots(const QuadArgs& q) {
  PairSlots s;
  const int pairs = q.px / 2;
#pragma unroll
  for (int it = 0; it < kPairIters; ++it) {
    const int i = threadIdx.x + it * kThreads;
    const int r = i / pairs;
    s.rp[it] = r < q.f.kh ? (r << 16) | (i - r * pairs) : -1;
  }
  return s;
}
// Patch row r of a tile is input row oy * sh - ph + r from column ox0 * sw - pw on: its pair p
// holds the 2C elements from element lin0 + 2 p C of the row, lin0 = (ox0 * sw - pw) * C. They
// are read as aligned 32-bit words from the even element at or before (one word more when C is
// odd and lin0 can be odd). Words outside the image read as zeros (with W * C even a word never
// straddles a row's end).
template <int C>
constexpr int kPairWords = C % 2 == 0 ? C : C + 1;
template <int C>
struct PairRegs {
  std::uint32_t v[kPairIters][kPairWords<C>];
};
template <int C>
__device__ inline void load_pairs(const QuadArgs& q, const PairSlots& sl, const Tile& s,
                                  const unsigned short* __restrict__ x, PairRegs<C>& R) {
  const FewArgs& a = q.f;
  const int iy0 = s.oy * a.sh - a.ph, lin_a = ((s.ox0 * a.sw - a.pw) * C) & ~1, row_len = a.w * C;
  const unsigned short* xn = x + static_cast<long long>(s.n) * a.x.ns;
#pragma unroll
  for (int it = 0; it < kPairIters; ++it) {
    const int r = sl.rp[it] >> 16, p = sl.rp[it] & 0xFFFF;
    const int iy = iy0 + r, base = lin_a + 2 * p * C;
    const bool row_ok = sl.rp[it] >= 0 && static_cast<unsigned>(iy) < static_cast<unsigned>(a.h);
    const std::uint32_t* src = reinterpret_cast<const std::uint32_t*>(xn + iy * row_len + base);
#pragma unroll
    for (int k = 0; k < kPairWords<C>; ++k)
      R.v[it][k] =
          row_ok && static_cast<unsigned>(base + 2 * k) < static_cast<unsigned>(row_len) ? src[k] : 0u;
  }
}
// The pairs as two quads each (channels C..3 zero, or channel 3 = `hi3` >> 16 when C < 4),
// one 16-byte store per pair.
template <int C>
__device__ inline void store_pairs(const QuadArgs& q, const PairSlots& sl, const Tile& s,
                                   const PairRegs<C>& R, unsigned short* patch, std::uint32_t hi3) {
  const FewArgs& a = q.f;
  const bool odd = (C % 2 == 1) && (((s.ox0 * a.sw - a.pw) * C) & 1);  // words start one element early
#pragma unroll
  for (int it = 0; it < kPairIters; ++it) {
    if (sl.rp[it] < 0) continue;
    const int r = sl.rp[it] >> 16, p = sl.rp[it] & 0xFFFF;
    std::uint32_t v[C];
#pragma unroll
    for (int k = 0; k < C; ++k) {
      if constexpr (C % 2 == 1)
        v[k] = odd ? __funnelshift_r(R.v[it][k], R.v[it][k + 1], 16) : R.v[it][k];
      else
        v[k] = R.v[it][k];
    }
    auto e = [&](int m) { return (v[m / 2] >> (16 * (m % 2))) & 0xFFFFu; };  // element m of the pair
    auto quad = [&](int m0, std::uint32_t& lo, std::uint32_t& hi) {
      lo = e(m0) | (C > 1 ? e(m0 + 1) << 16 : 0u);
      hi = (C > 2 ? e(m0 + 2) : 0u) | (C > 3 ? e(m0 + 3) << 16 : hi3);
    };
    uint4 out;
    quad(0, out.x, out.y);
    quad(C, out.z, out.w);
    *reinterpret_cast<uint4*>(patch + (r * q.px + 2 * p) * 4) = out;
  }
}

#endif

// Forward: warp (wm, wn) = (warp & 1, warp >> 1) computes pixels wm * 32 + [0, 32) (two m16
// tiles) by channels wn * 16 + [0, 16) (two n8 tiles) of a 64 x 64 tile. Filters in shared
// memory as [channel][r][KS * 16 taps] (tap t: quad pixel t / 4, channel t % 4).
template <int C>
__global__ void __launch_bounds__(kThreads, 3)
    conv_quad_fwd_kernel(QuadArgs q, const unsigned short* __restrict__ x, const bf16* __restrict__ w,
                         const bf16* __restrict__ b, bool relu, bf16* __restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) unsigned char smem[];
  const FewArgs& a = q.f;
  const int pbytes = quad_patch_bytes(q);
  unsigned short* ws = reinterpret_cast<unsigned short*>(smem + 2 * pbytes);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int wm = warp & 1, wn = warp >> 1;
  const int n0 = blockIdx.y * kTileN;
  const int n_valid = min(kTileN, a.k_out - n0);
  const int kr = q.ks * 16;
  for (int i = tid; i < kTileN * a.kh * kr; i += kThreads) {
    const int n = i / (a.kh * kr), rem = i - n * (a.kh * kr);
    const int r = rem / kr, t = rem - r * kr, s = t / 4, c = t % 4;
    ws[n * q.w_ld + rem] = (n < n_valid && s < a.kw && c < C)
                               ? reinterpret_cast<const unsigned short*>(
                                     w)[((static_cast<long long>(n0 + n) * a.kh + r) * a.kw + s) * C + c]
                               : 0;
  }
  float bias[2][2];
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int n = wn * 16 + nt * 8 + 2 * t4 + e;
      bias[nt][e] = (b && n < n_valid) ? __bfloat162float(b[n0 + n]) : 0.f;
    }
  // this lane's ldmatrix rows: A, pixel wm * 32 + mi * 16 + (lane & 15), taps + (lane >> 4) * 8;
  // B, channel wn * 16 + (lane >> 4) * 8 + (lane & 7), taps + ((lane >> 3) & 1) * 8
  const int arow = ((wm * 32 + (lane & 15)) * a.sw) * 4 + (lane >> 4) * 8;
  const unsigned short* brow = ws + (wn * 16 + (lane >> 4) * 8 + (lane & 7)) * q.w_ld + ((lane >> 3) & 1) * 8;
  const PairSlots sl = pair_slots(q);
  PairRegs<C> next;
  unsigned t = blockIdx.x;
  Tile s = tile_at(a, t);
  if (t < a.tiles) {
    load_pairs<C>(q, sl, s, x, next);
    store_pairs<C>(q, sl, s, next, reinterpret_cast<unsigned short*>(smem), 0u);
  }
  __syncthreads();  // the filters and the first patch
  Tile sn = tile_at(a, t + gridDim.x);
  if (t + gridDim.x < a.tiles) load_pairs<C>(q, sl, sn, x, next);
  for (int it = 0; t < a.tiles; t += gridDim.x, ++it) {
    const unsigned short* patch = reinterpret_cast<const unsigned short*>(smem + (it & 1) * pbytes);
    float acc[2][2][4] = {};
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) {
      if (r >= a.kh) break;
#pragma unroll
      for (int k = 0; k < kQuadMaxKs; ++k) {
        if (k >= q.ks) break;
        std::uint32_t bf[4];  // b0, b1 of n8 tile 0, then of tile 1
        ldsm_x4(bf, brow + (r * q.ks + k) * 16);
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          std::uint32_t af[4];
          ldsm_x4(af, patch + r * q.px * 4 + arow + mi * 16 * a.sw * 4 + k * 16);
          mma_bf16(acc[mi][0], af, bf);
          mma_bf16(acc[mi][1], af, bf + 2);
        }
      }
    }
    // the next tile's patch into the other buffer (last read a tile ago), then one barrier
    if (t + gridDim.x < a.tiles)
      store_pairs<C>(q, sl, sn, next, reinterpret_cast<unsigned short*>(smem + ((it + 1) & 1) * pbytes), 0u);
    // bias (+ReLU), rounded once. A row's 16 channels are 4 pairs (n8 tile 0) and 4 pairs
    // (tile 1) over the lanes t4 = 0..3; neighbouring lanes swap one pair, so each lane stores
    // 4 adjacent channels (8 bytes) and a warp's store covers whole 32-byte sectors.
    // n_valid is a multiple of 16: a warp's channels are all valid or none is.
    bf16* yrow =
        y + static_cast<long long>(s.n) * a.y.ns + static_cast<long long>(s.oy * a.wo + s.ox0) * a.y.pix + n0;
    const bool odd = t4 & 1;
    const int nst = wn * 16 + (odd ? 8 + 2 * (t4 - 1) : 2 * t4);  // this lane's first channel
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        std::uint32_t wv[2];
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          float v0 = acc[mi][nt][2 * h] + bias[nt][0], v1 = acc[mi][nt][2 * h + 1] + bias[nt][1];
          if (relu) {
            v0 = v0 > 0.f ? v0 : 0.f;
            v1 = v1 > 0.f ? v1 : 0.f;
          }
          const __nv_bfloat162 pr = __floats2bfloat162_rn(v0, v1);
          wv[nt] = *reinterpret_cast<const std::uint32_t*>(&pr);
        }
        const std::uint32_t got = __shfl_xor_sync(0xFFFFFFFFu, odd ? wv[0] : wv[1], 1);
        const uint2 out = odd ? make_uint2(got, wv[1]) : make_uint2(wv[0], got);
        const int p = wm * 32 + mi * 16 + g + 8 * h;
        if (p < s.count && wn * 16 < n_valid) *reinterpret_cast<uint2*>(yrow + p * a.y.pix + nst) = out;
      }
    __syncthreads();
    s = sn;
    if (t + 2 * gridDim.x < a.tiles) {
      sn = tile_at(a, t + 2 * gridDim.x);
      load_pairs<C>(q, sl, sn, x, next);
    }
  }
#else
  __trap();
#endif
}

// Weight gradient: D[n][col] = sum over pixels of dz[px][n] * patch tap col of px, with the
// columns col = (r, k16 step, tap) of the padded window rows (R * KS * 16, n8 tiles of 8 taps).
// Warp (wm, wn) = (warp & 1, warp >> 1): channels wm * 32 + [0, 32) (two m16 tiles) by the
// column tiles wn * NW + [0, NW). partial[block] = [64][R * KS * 16] sums, then 64 bias sums.
template <int C>
__global__ void __launch_bounds__(kThreads, 2)
    conv_quad_wgrad_kernel(QuadArgs q, const unsigned short* __restrict__ x, const bf16* __restrict__ y,
                           const bf16* __restrict__ dy, bool relu, float* __restrict__ partial) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kPasses = kDzPasses;
  constexpr int kQuadPairs = (kQuadMaxNw + 1) / 2;  // ldmatrix.x4 per k16 step
  extern __shared__ __align__(128) unsigned char smem[];
  const FewArgs& a = q.f;
  const int pbytes = quad_patch_bytes(q);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int wm = warp & 1, wn = warp >> 1;
  const int n0 = blockIdx.y * kTileN;
  const int n_valid = min(kTileN, a.k_out - n0);
  const int c8 = (tid % (kTileN / 8)) * 8;  // the 8 channels this thread loads dz for
  const int cols = q.nt * 8;
  // C < 4: the bias gradient is the column of channel 3 (ones) of window tap (0, 0); C = 4:
  // each thread sums dz for its 8 channels, added up in thread order at the end
  constexpr bool kOnes = C < 4;
  constexpr std::uint32_t kHi3 = kOnes ? 0x3F800000u : 0u;  // bf16 1.0 in channel 3
  // the patch offset of this lane's ldmatrix row for each pair of this warp's column tiles:
  // column tile ct = wn * NW + 2 i + (lane >> 4), pixel (lane & 15) of the k16 step
  int boff[kQuadPairs];
#pragma unroll
  for (int i = 0; i < kQuadPairs; ++i) {
    int ct = wn * q.nw + 2 * i + (lane >> 4);
    if (ct >= q.nt) ct = q.nt - 1;  // a tile past the end: any valid address, its sums are dropped
    const int r = ct / (2 * q.ks), tc = ct - r * 2 * q.ks;
    boff[i] = r * q.px * 4 + (lane & 15) * a.sw * 4 + tc * 8;
  }
  float db[kOnes ? 1 : 8] = {};
  float acc[2][kQuadMaxNw][4] = {};

  Pack<bf16, 8> dv[kPasses], yv[kPasses];
  auto load_dz = [&](const Tile& s) { load_dz_tile(a, s, y, dy, relu, n0, n_valid, c8, dv, yv); };
  // dz = relu'(y) * dy of the loaded tile into zs (zeros past its pixels), summed into db
  auto store_dz = [&](const Tile& s, bf16* zs) {
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      const int p = (tid + it * kThreads) / (kTileN / 8);
      const bool live = p < s.count && c8 < n_valid;
      Pack<bf16, 8> z;
      const auto* d2 = reinterpret_cast<const std::uint32_t*>(&dv[it]);
      const auto* y2 = reinterpret_cast<const __nv_bfloat162*>(&yv[it]);
      auto* z2 = reinterpret_cast<std::uint32_t*>(&z);
#pragma unroll
      for (int k = 0; k < 4; ++k) {  // channel pairs: dy where y > 0, else +0
        const std::uint32_t m = !live  ? 0u
                                : relu ? __hgt2_mask(y2[k], __float2bfloat162_rn(0.f))
                                       : 0xFFFFFFFFu;
        z2[k] = d2[k] & m;
        if constexpr (!kOnes) {
          db[2 * k] += __bfloat162float(z.v[2 * k]);
          db[2 * k + 1] += __bfloat162float(z.v[2 * k + 1]);
        }
      }
      *reinterpret_cast<Pack<bf16, 8>*>(zs + p * kLdz + c8) = z;
    }
  };
  auto zbuf = [&](int i) { return reinterpret_cast<bf16*>(smem + 2 * pbytes + (i & 1) * kZBytes); };
  auto pbuf = [&](int i) { return reinterpret_cast<unsigned short*>(smem + (i & 1) * pbytes); };

  const PairSlots sl = pair_slots(q);
  PairRegs<C> next;
  unsigned t = blockIdx.x;
  Tile s = tile_at(a, t);
  if (t < a.tiles) {
    load_pairs<C>(q, sl, s, x, next);
    load_dz(s);
    store_pairs<C>(q, sl, s, next, pbuf(0), kHi3);
    store_dz(s, zbuf(0));
  }
  __syncthreads();
  Tile sn = tile_at(a, t + gridDim.x);
  if (t + gridDim.x < a.tiles) {
    load_pairs<C>(q, sl, sn, x, next);
    load_dz(sn);
  }
  for (int it = 0; t < a.tiles; t += gridDim.x, ++it) {
    const unsigned short* patch = pbuf(it);
    const bf16* zs = zbuf(it);
#pragma unroll
    for (int kp = 0; kp < kTileP; kp += 16) {
      // dz^T fragments of the two 16-channel row tiles (ldmatrix.trans of [pixel][channel])
      std::uint32_t af[2][4];
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const int mat = lane >> 3, row = lane & 7;
        ldsm_x4_trans(af[m], zs + (kp + (mat >> 1) * 8 + row) * kLdz + wm * 32 + m * 16 + (mat & 1) * 8);
      }
#pragma unroll
      for (int i = 0; i < kQuadPairs; ++i) {
        if (2 * i >= q.nw) break;
        std::uint32_t bf[4];  // matrices: (pixels 0-7, tile 2i), (8-15, 2i), (0-7, 2i+1), (8-15, 2i+1)
        ldsm_x4_trans(bf, patch + boff[i] + kp * a.sw * 4);
#pragma unroll
        for (int m = 0; m < 2; ++m) {
          mma_bf16(acc[m][2 * i], af[m], bf);
          if (2 * i + 1 < kQuadMaxNw && 2 * i + 1 < q.nw) mma_bf16(acc[m][2 * i + 1], af[m], bf + 2);
        }
      }
    }
    if (t + gridDim.x < a.tiles) {  // the next tile into the other buffers, then one barrier
      store_pairs<C>(q, sl, sn, next, pbuf(it + 1), kHi3);
      store_dz(sn, zbuf(it + 1));
    }
    __syncthreads();
    s = sn;
    if (t + 2 * gridDim.x < a.tiles) {
      sn = tile_at(a, t + 2 * gridDim.x);
      load_pairs<C>(q, sl, sn, x, next);
      load_dz(sn);
    }
  }

  // this block's sums: rows wm * 32 + m * 16 + g (+8), columns ct * 8 + 2 t4 (+1)
  float* out =
      partial + (static_cast<long long>(blockIdx.y) * gridDim.x + blockIdx.x) * (kTileN * cols + kTileN);
#pragma unroll
  for (int j = 0; j < kQuadMaxNw; ++j) {
    const int ct = wn * q.nw + j;
    if (j >= q.nw || ct >= q.nt) continue;
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float* o = out + (wm * 32 + m * 16 + g + 8 * h) * cols + ct * 8 + 2 * t4;
        o[0] = acc[m][j][2 * h];
        o[1] = acc[m][j][2 * h + 1];
      }
  }
  if constexpr (!kOnes)  // the loop's last barrier: no warp still reads the dz tiles
    block_bias_sums(db, reinterpret_cast<float*>(zbuf(0)), out + kTileN * cols);
#else
  __trap();
#endif
}

// The weight gradient's blocks' sums added in two passes (one thread per output and chunk of
// blocks, then one per output), each in a fixed order: deterministic per device. Output i of
// a filter n is tap k = i % (taps + 1) of it (the last: its bias).
constexpr int kReduceChunks = 8;

__device__ inline long long quad_partial_offset(const QuadArgs& q, int n, int k) {
  const FewArgs& a = q.f;
  const int taps = a.kh * a.kw * a.c, cols = q.nt * 8, nl = n % kTileN;
  if (k == taps)  // the bias: the ones column (tap (0, 0), channel 3) or the blocks' bias sums
    return a.c < 4 ? static_cast<long long>(nl) * cols + 3 : kTileN * static_cast<long long>(cols) + nl;
  const int r = k / (a.kw * a.c), rem = k - r * a.kw * a.c, s = rem / a.c, c = rem - s * a.c;
  return static_cast<long long>(nl) * cols + r * q.ks * 16 + s * 4 + c;
}

// tmp[chunk][i] = sum of partial over the chunk's blocks (blockIdx.y: the chunk)
__global__ void conv_quad_reduce_chunks_kernel(QuadArgs q, int blocks_x, const float* __restrict__ partial,
                                               float* __restrict__ tmp) {
  const FewArgs& a = q.f;
  const int per_n = a.kh * a.kw * a.c + 1, outputs = a.k_out * per_n;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= outputs) return;
  const int n = i / per_n, k = i - n * per_n;
  const long long stride = static_cast<long long>(kTileN) * q.nt * 8 + kTileN;
  const float* p =
      partial + static_cast<long long>(n / kTileN) * blocks_x * stride + quad_partial_offset(q, n, k);
  const int per = (blocks_x + kReduceChunks - 1) / kReduceChunks;
  const int b0 = blockIdx.y * per, b1 = min(blocks_x, b0 + per);
  float s[4] = {0.f, 0.f, 0.f, 0.f};  // four independent sums, loads in flight together
  int bx = b0;
  for (; bx + 4 <= b1; bx += 4)
#pragma unroll
    for (int j = 0; j < 4; ++j) s[j] += p[(bx + j) * stride];
  for (; bx < b1; ++bx) s[0] += p[bx * stride];
  tmp[static_cast<long long>(blockIdx.y) * outputs + i] = (s[0] + s[1]) + (s[2] + s[3]);
}

// dw[n][r][s][c] += the chunks' sums in chunk order; db likewise
__global__ void conv_quad_reduce_final_kernel(QuadArgs q, const float* __restrict__ tmp,
                                              bf16* __restrict__ dw, bf16* __restrict__ db) {
  const FewArgs& a = q.f;
  const int taps = a.kh * a.kw * a.c, per_n = taps + 1, outputs = a.k_out * per_n;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= outputs) return;
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < kReduceChunks; ++c) sum += tmp[static_cast<long long>(c) * outputs + i];
  const int n = i / per_n, k = i - n * per_n;
  if (k < taps) {
    bf16& d = dw[static_cast<long long>(n) * taps + k];
    d = __float2bfloat16(__bfloat162float(d) + sum);
  } else if (db) {
    db[n] = __float2bfloat16(__bfloat162float(db[n]) + sum);
  }
}

}  // namespace

bool quad_path(const FewArgs& a) {
  if (a.c > 4 || a.sw % 2 != 0 || a.kw > 4 * kQuadMaxKs || a.kh > kMaxRows || (a.w * a.c) % 2 != 0 ||
      a.x.ns % 2 != 0)
    return false;
  const QuadArgs q = make_quad(a);
  return a.kh * q.px / 2 <= kPairIters * kThreads && q.nw <= kQuadMaxNw;
}

void quad_fwd(const FewArgs& a, const bf16* x, const bf16* w, const bf16* b, bool relu, bf16* y,
              cudaStream_t stream) {
  const QuadArgs q = make_quad(a);
  const dim3 grid(static_cast<unsigned>(std::min<long long>(a.tiles, 3LL * sm_count())),  // 3 fit an SM
                  (a.k_out + kTileN - 1) / kTileN);
  auto kernel = a.c == 1   ? conv_quad_fwd_kernel<1>
                : a.c == 2 ? conv_quad_fwd_kernel<2>
                : a.c == 3 ? conv_quad_fwd_kernel<3>
                           : conv_quad_fwd_kernel<4>;
  kernel<<<grid, kThreads, quad_fwd_smem(q), stream>>>(q, reinterpret_cast<const unsigned short*>(x), w, b,
                                                       relu, y);
  KERNEL_CHECK("conv_quad_fwd_kernel");
}

std::size_t quad_wgrad_scratch(const FewArgs& a) {  // the blocks' sums, then the chunk sums
  const std::size_t blocks_y = (a.k_out + kTileN - 1) / kTileN;
  return blocks_y * wgrad_blocks(a) * (std::size_t(kTileN) * make_quad(a).nt * 8 + kTileN) +
         std::size_t(kReduceChunks) * a.k_out * (a.kh * a.kw * a.c + 1);
}

void quad_bwd_filter(const FewArgs& a, const bf16* x, const bf16* y, const bf16* dy, bool relu, bf16* dw,
                     bf16* db, float* partial, cudaStream_t stream) {
  const QuadArgs q = make_quad(a);
  const unsigned bx = wgrad_blocks(a);
  const dim3 grid(bx, (a.k_out + kTileN - 1) / kTileN);
  auto kernel = a.c == 1   ? conv_quad_wgrad_kernel<1>
                : a.c == 2 ? conv_quad_wgrad_kernel<2>
                : a.c == 3 ? conv_quad_wgrad_kernel<3>
                           : conv_quad_wgrad_kernel<4>;
  kernel<<<grid, kThreads, quad_wgrad_smem(q), stream>>>(q, reinterpret_cast<const unsigned short*>(x), y, dy,
                                                         relu, partial);
  KERNEL_CHECK("conv_quad_wgrad_kernel");
  const int outputs = a.k_out * (a.kh * a.kw * a.c + 1);
  float* tmp = partial + std::size_t(grid.y) * bx * (std::size_t(kTileN) * q.nt * 8 + kTileN);
  const unsigned rb = (outputs + 127) / 128;
  conv_quad_reduce_chunks_kernel<<<dim3(rb, kReduceChunks), 128, 0, stream>>>(q, static_cast<int>(bx),
                                                                              partial, tmp);
  KERNEL_CHECK("conv_quad_reduce_chunks_kernel");
  conv_quad_reduce_final_kernel<<<rb, 128, 0, stream>>>(q, tmp, dw, db);
  KERNEL_CHECK("conv_quad_reduce_final_kernel");
}

}  // namespace incept::kernels::few

// conv1 as a direct fp32 convolution with FMA arithmetic (conv_few_fp32_gpu.h).
//
// Both kernels keep their operands in shared memory and give each lane many products per load:
// 56 (forward) or 40 (weight gradient) FMAs per 9 or 7 shared-memory loads, lanes paired so
// that the shared memory can return two lanes' loads of one word in one cycle (the two lanes of a
// pair read the same input words; the lanes of each parity the same filters or dz). On an
// H200 (ncu, GoogLeNet at batch 128) both run at about 60 % of the FMA pipe's peak; the rest is
// the loads, address arithmetic (which shares that pipe) and the tiles' staging.
//
// Forward, shared memory: the block's filters as [tap][64 channels], then the tile's input rows.
// Row pr of the patch is input row oy0 * 2 - pad_h + pr, stored by channel and column parity:
// element [c][col % 2][col / 2] of row pr holds input column col - pad_w, so output column ox
// reads tap (r, s, c) at [c][s % 2][ox + s / 2] of row 2 * (output row in the tile) + r:
// consecutive output columns read consecutive words, and every tap's offset within a window row
// is a compile-time constant. Rows are 696 floats (16 mod 32 for two rows down), so the warp
// that holds the end of one output row and the start of the next reads different banks. The
// tile's rows are loaded in rounds whose loads are all issued before their stores (double
// buffering with cp.async measured 4 % slower: its per-copy address arithmetic).
//
// Weight gradient, shared memory, two buffers (the next tile's copies, cp.async, run under
// this tile's products): the tile's dz as [pixel][64 channels] (and y for the ReLU mask), then
// the input rows as they are in memory (pixel-major, 3 channels), 693 floats a row. Tap (r, s,
// c) of a pixel is at r * 693 + s * 3 + c = t + 672 * (t / 21) from its window's first word (t
// = (r * 7 + s) * 3 + c), and 672 = 21 * 32, so the 16 taps a warp reads at once (consecutive
// t) fall in 16 different banks.
#include <algorithm>
#include <cstdint>

#include "engine/check.h"
#include "kernels/conv_few_fp32_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/dtype_gpu.h"
#include "kernels/nhwc_view.h"

namespace incept::kernels {
namespace {

constexpr int kR = 7, kS = 7, kC = 3, kSH = 2, kSW = 2;
constexpr int kTaps = kR * kS * kC;  // 147
constexpr int kThreads = 256;        // 8 warps
constexpr int kChans = 64;           // output channels per block
constexpr int kPx = 7;               // output pixels per lane
constexpr int kSlots = 32 * kPx;     // output pixels per forward tile
constexpr int kSlotsW = 112;         // and per weight-gradient tile
constexpr int kMaxWo = 112;
constexpr int kMaxTileRows = 4;
// forward patch: per channel and column parity kJ columns; rows of kFwdRow floats
constexpr int kJ = 116;
constexpr int kParity = kJ, kChanPlane = kSW * kJ, kFwdRow = kC * kChanPlane;  // 696
constexpr int kFwdCols = kSW * kJ;                                             // 232 input columns
static_assert((kMaxWo - 1) * kSW + kS <= kFwdCols, "the forward patch must hold a row's windows");
static_assert(kSH * kFwdRow % 32 == 16, "two patch rows down must be 16 banks over");
// weight-gradient patch: rows as in memory, 693 floats (21 mod 32)
constexpr int kRun = kS * kC;                    // 21 taps per window row
constexpr int kWCols = (kMaxWo - 1) * kSW + kS;  // 229 input columns
constexpr int kWRow = 693;
static_assert(kWRow >= kWCols * kC && kWRow % 32 == kRun, "wgrad patch rows: 21 mod 32");
constexpr int kRoundPx = 4;   // forward: input pixels a thread loads at once (3 values each)
constexpr int kTapSlots = 5;  // taps per lane: 160 >= 147 + the bias column
constexpr int kOnesTap = kTaps;
constexpr int kCols = kTaps + 1;  // a block's partial sums per channel: the taps, then the bias

struct Args {
  int h, w;  // input (pixel stride 3)
  long long xns;
  int ho, wo, ypix;
  long long yns;
  int ph, pw, k;
  int tile_rows;   // output rows per tile
  int patch_rows;  // (tile_rows - 1) * 2 + 7
  int tiles_per_image;
  unsigned tiles;
};

// Tiles of as many whole output rows as fit `slots` output pixels (at most kMaxTileRows).
Args make_args(const Nchw& xs, const ConvGeom& g, const Nchw& ys, int slots) {
  Args a{};
  a.h = xs.h, a.w = xs.w, a.xns = xs.nstride();
  a.ho = ys.h, a.wo = ys.w, a.ypix = nhwc_args(ys).pix, a.yns = ys.nstride();
  a.ph = g.pad_h, a.pw = g.pad_w, a.k = g.num_output;
  a.tile_rows = std::max(1, std::min(kMaxTileRows, slots / std::max(ys.w, 1)));
  a.patch_rows = (a.tile_rows - 1) * kSH + kR;
  a.tiles_per_image = (ys.h + a.tile_rows - 1) / a.tile_rows;
  a.tiles = static_cast<unsigned>(std::int64_t(ys.n) * a.tiles_per_image);
  return a;
}

int fwd_smem(const Args& a) {  // the filters and the patch
  return (kTaps * kChans + a.patch_rows * kFwdRow) * int(sizeof(float));
}
// two buffers of the tile's dz (and, with the ReLU mask, y) and input rows
__host__ __device__ inline int wgrad_buffer_floats(const Args& a, bool relu) {  // 16-byte multiples
  return ((relu ? 2 : 1) * kSlotsW * kChans + a.patch_rows * kWRow + 3) / 4 * 4;
}
int wgrad_smem(const Args& a, bool relu) {
  return 2 * wgrad_buffer_floats(a, relu) * int(sizeof(float));
}
unsigned blocks_for(const Args& a) {
  return static_cast<unsigned>(std::min<long long>(a.tiles, 2LL * sm_count()));
}

struct TileAt {
  int n, oy0, rows;
};
__device__ inline TileAt tile_at(const Args& a, unsigned t) {
  TileAt s;
  s.n = static_cast<int>(t / a.tiles_per_image);
  s.oy0 = static_cast<int>(t - unsigned(s.n) * a.tiles_per_image) * a.tile_rows;
  s.rows = min(a.tile_rows, a.ho - s.oy0);
  return s;
}

// 4-byte copies from global to shared memory that the block waits for later (cp.async, compute
// capability 8.0 and up; zeros where !valid), in groups; below 8.0 plain loads and stores.
__device__ __forceinline__ void copy4_async(float* dst, const float* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 4 : 0));
#else
  *dst = valid ? *src : 0.f;
#endif
}
__device__ __forceinline__ void copy16_async(float* dst, const float* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
#else
  *reinterpret_cast<float4*>(dst) = *reinterpret_cast<const float4*>(src);
#endif
}
__device__ __forceinline__ void copy_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// waits until at most `pending` of this thread's latest groups are still in flight
template <int pending>
__device__ __forceinline__ void copy_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
#endif
}

__global__ void __launch_bounds__(kThreads, 2)
    conv_few_fp32_fwd_kernel(Args a, const float* __restrict__ x, const float* __restrict__ w,
                             const float* __restrict__ b, bool relu, float* __restrict__ y) {
  extern __shared__ float4 smem4[];
  float* wsm = reinterpret_cast<float*>(smem4);  // [tap][64]
  float* patch = wsm + kTaps * kChans;           // [patch row][c][parity][kJ]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int k0 = blockIdx.y * kChans;
  for (int i = tid; i < kTaps * kChans; i += kThreads) {
    const int kk = i % kChans, t = i / kChans;
    wsm[i] = w[static_cast<long long>(k0 + kk) * kTaps + t];
  }
  // Warp w computes channels (w & 3) * 16 + [0, 16) of the tile's pixel half w >> 2; lane pair
  // lp = lane >> 1 takes pixels lp + 16 i of that half, its lanes channels + 8 (lane & 1): the
  // two lanes of a pair read the same input words, the lanes of each parity the same filters
  // (loads that the shared memory can return two lanes to a cycle).
  const int ch = (warp & 3) * 16 + (lane & 1) * 8, half = warp >> 2, lp = lane >> 1;
  // base: the patch word of each pixel's window's first tap
  int base[kPx];
#pragma unroll
  for (int i = 0; i < kPx; ++i) {
    const int p = half * (kSlots / 2) + lp + 16 * i, row = p / a.wo;
    base[i] = row < a.tile_rows ? row * kSH * kFwdRow + (p - row * a.wo) : 0;
  }
  for (unsigned t = blockIdx.x; t < a.tiles; t += gridDim.x) {
    const TileAt s = tile_at(a, t);
    __syncthreads();  // the last tile's patch is read
    const float* xn = x + static_cast<long long>(s.n) * a.xns;
    const int iy0 = s.oy0 * kSH - a.ph;
    // the patch by input pixels (3 channels each), in rounds of kRoundPx pixels per thread whose
    // loads are all issued before their stores (measured faster than double buffering with
    // cp.async here: the copies' address arithmetic shares the FMA pipe with the products)
    const int pixels = a.patch_rows * kFwdCols;
    for (int i0 = tid; i0 < pixels; i0 += kRoundPx * kThreads) {
      float v[kRoundPx][kC];
#pragma unroll
      for (int u = 0; u < kRoundPx; ++u) {
        const int i = i0 + u * kThreads;
        const int pr = i / kFwdCols, col = i - pr * kFwdCols;
        const int iy = iy0 + pr, ix = col - a.pw;
        const bool inside = i < pixels && static_cast<unsigned>(iy) < static_cast<unsigned>(a.h) &&
                            static_cast<unsigned>(ix) < static_cast<unsigned>(a.w);
        const float* src = xn + (iy * a.w + ix) * kC;
#pragma unroll
        for (int c = 0; c < kC; ++c) v[u][c] = inside ? src[c] : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kRoundPx; ++u) {
        const int i = i0 + u * kThreads;
        const int pr = i / kFwdCols, col = i - pr * kFwdCols;
        float* dst = patch + pr * kFwdRow + (col % kSW) * kParity + col / kSW;
        if (i < pixels)
#pragma unroll
          for (int c = 0; c < kC; ++c) dst[c * kChanPlane] = v[u][c];
      }
    }
    __syncthreads();  // the patch (and, at the first tile, the filters)
    float acc[kPx][8];
#pragma unroll
    for (int i = 0; i < kPx; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
        // one window row per iteration (21 taps unrolled: the loop body stays in the instruction cache)
#pragma unroll 1
    for (int r = 0; r < kR; ++r) {
      const float* prow = patch + r * kFwdRow;
      const float4* wr = reinterpret_cast<const float4*>(wsm + r * kRun * kChans + ch);
#pragma unroll
      for (int sx = 0; sx < kS; ++sx)
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          const int tap = sx * kC + c;
          const int off = c * kChanPlane + (sx % kSW) * kParity + sx / kSW;
          const float4 w0 = wr[tap * (kChans / 4)], w1 = wr[tap * (kChans / 4) + 1];
#pragma unroll
          for (int i = 0; i < kPx; ++i) {
            const float v = prow[base[i] + off];
            acc[i][0] = fmaf(v, w0.x, acc[i][0]);
            acc[i][1] = fmaf(v, w0.y, acc[i][1]);
            acc[i][2] = fmaf(v, w0.z, acc[i][2]);
            acc[i][3] = fmaf(v, w0.w, acc[i][3]);
            acc[i][4] = fmaf(v, w1.x, acc[i][4]);
            acc[i][5] = fmaf(v, w1.y, acc[i][5]);
            acc[i][6] = fmaf(v, w1.z, acc[i][6]);
            acc[i][7] = fmaf(v, w1.w, acc[i][7]);
          }
        }
    }
#pragma unroll
    for (int i = 0; i < kPx; ++i) {
      const int p = half * (kSlots / 2) + lp + 16 * i, row = p / a.wo;
      if (row >= s.rows) continue;
      float o[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        o[j] = acc[i][j] + (b ? b[k0 + ch + j] : 0.f);
        if (relu) o[j] = o[j] > 0.f ? o[j] : 0.f;
      }
      float* yp = y + static_cast<long long>(s.n) * a.yns +
                  (static_cast<long long>(s.oy0 + row) * a.wo + p - row * a.wo) * a.ypix + k0 + ch;
      reinterpret_cast<float4*>(yp)[0] = make_float4(o[0], o[1], o[2], o[3]);
      reinterpret_cast<float4*>(yp)[1] = make_float4(o[4], o[5], o[6], o[7]);
    }
  }
}

// partial[(blockIdx.y * gridDim.x + blockIdx.x) * 64 + channel][kCols]: the block's sums.
template <bool kRelu>
__global__ void __launch_bounds__(kThreads, 2)
    conv_few_fp32_wgrad_kernel(Args a, const float* __restrict__ x, const float* __restrict__ y,
                               const float* __restrict__ dy, float* __restrict__ partial) {
  extern __shared__ float4 smem4[];
  float* const smem = reinterpret_cast<float*>(smem4);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int k0 = blockIdx.y * kChans;
  // buffer i: dz [slot][64], (kRelu) y [slot][64], input rows [patch row][kWRow]
  const int buffer = wgrad_buffer_floats(a, kRelu);  // dz's 16-byte copies stay aligned in both
  auto zbuf = [&](int i) { return smem + (i & 1) * buffer; };
  auto ybuf = [&](int i) { return smem + (i & 1) * buffer + kSlotsW * kChans; };
  auto pbuf = [&](int i) { return smem + (i & 1) * buffer + (kRelu ? 2 : 1) * kSlotsW * kChans; };
  // tile t's dz (y) and input rows into buffer i, as one group of asynchronous copies: the next
  // tile's data loads while this one's products run
  auto fill = [&](unsigned t, int i) {
    const TileAt s = tile_at(a, t);
    const float* xn = x + static_cast<long long>(s.n) * a.xns;
    const int iy0 = s.oy0 * kSH - a.ph, row_len = a.w * kC;
    float* pb = pbuf(i);
    for (int e = tid; e < a.patch_rows * kWRow; e += kThreads) {
      const int pr = e / kWRow, col = e - pr * kWRow;
      const int iy = iy0 + pr, lin = col - a.pw * kC;
      const bool inside = col < kWCols * kC && static_cast<unsigned>(iy) < static_cast<unsigned>(a.h) &&
                          static_cast<unsigned>(lin) < static_cast<unsigned>(row_len);
      copy4_async(pb + e, inside ? xn + iy * row_len + lin : xn, inside);
    }
    const long long yo = static_cast<long long>(s.n) * a.yns + k0;
    float *zb = zbuf(i), *yb = ybuf(i);
    for (int v = tid; v < s.rows * a.wo * (kChans / 4); v += kThreads) {
      const int p = v / (kChans / 4), q = v % (kChans / 4);
      const int row = p / a.wo, ox = p - row * a.wo;
      const long long o = yo + (static_cast<long long>(s.oy0 + row) * a.wo + ox) * a.ypix + 4 * q;
      copy16_async(zb + 4 * v, dy + o);
      if (kRelu) copy16_async(yb + 4 * v, y + o);
    }
    copy_commit();
  };
  // Warp w sums channels (w & 3) * 16 + [0, 16) for the taps of half w >> 2 (80 each); lane
  // pair lp = lane >> 1 takes taps lp + 16 j of that half, its lanes channels + 8 (lane & 1):
  // the two lanes of a pair read the same input words, the lanes of each parity the same dz
  // (loads that the shared memory can return two lanes to a cycle).
  const int ch = (warp & 3) * 16 + (lane & 1) * 8, t0 = (warp >> 2) * (kTapSlots * 16) + (lane >> 1);
  int tapoff[kTapSlots];
#pragma unroll
  for (int j = 0; j < kTapSlots; ++j) {
    const int t = t0 + 16 * j;
    tapoff[j] = t < kTaps ? (t / kRun) * kWRow + t % kRun : 0;
  }
  const bool ones = t0 + 16 * (kTapSlots - 1) == kOnesTap;
  float acc[kTapSlots][8];
#pragma unroll
  for (int j = 0; j < kTapSlots; ++j)
#pragma unroll
    for (int c = 0; c < 8; ++c) acc[j][c] = 0.f;
  if (blockIdx.x < a.tiles) fill(blockIdx.x, 0);
  int it = 0;
  for (unsigned t = blockIdx.x; t < a.tiles; t += gridDim.x, ++it) {
    const TileAt s = tile_at(a, t);
    if (t + gridDim.x < a.tiles)
      fill(t + gridDim.x, it + 1);  // read two tiles ago: see the barrier below
    else
      copy_commit();  // an empty group: the wait below still means "this tile's copies"
    copy_wait<1>();
    __syncthreads();  // every thread's copies of this tile
    const float* zch = zbuf(it) + ch;
    const float* ych = ybuf(it) + ch;
    const float* patch = pbuf(it);
    for (int row = 0; row < s.rows; ++row) {
      const float* prow = patch + row * (kSH * kWRow);
      const int p0 = row * a.wo * kChans;
#pragma unroll 4
      for (int ox = 0; ox < a.wo; ++ox) {
        float4 z0 = *reinterpret_cast<const float4*>(zch + p0 + ox * kChans);
        float4 z1 = *reinterpret_cast<const float4*>(zch + p0 + ox * kChans + 4);
        if (kRelu) {  // dz = dy where y > 0
          const float4 m0 = *reinterpret_cast<const float4*>(ych + p0 + ox * kChans);
          const float4 m1 = *reinterpret_cast<const float4*>(ych + p0 + ox * kChans + 4);
          z0 = make_float4(m0.x > 0.f ? z0.x : 0.f, m0.y > 0.f ? z0.y : 0.f, m0.z > 0.f ? z0.z : 0.f,
                           m0.w > 0.f ? z0.w : 0.f);
          z1 = make_float4(m1.x > 0.f ? z1.x : 0.f, m1.y > 0.f ? z1.y : 0.f, m1.z > 0.f ? z1.z : 0.f,
                           m1.w > 0.f ? z1.w : 0.f);
        }
        float v[kTapSlots];
#pragma unroll
        for (int j = 0; j < kTapSlots; ++j) v[j] = prow[ox * (kSW * kC) + tapoff[j]];
        if (ones) v[kTapSlots - 1] = 1.f;
#pragma unroll
        for (int j = 0; j < kTapSlots; ++j) {
          acc[j][0] = fmaf(z0.x, v[j], acc[j][0]);
          acc[j][1] = fmaf(z0.y, v[j], acc[j][1]);
          acc[j][2] = fmaf(z0.z, v[j], acc[j][2]);
          acc[j][3] = fmaf(z0.w, v[j], acc[j][3]);
          acc[j][4] = fmaf(z1.x, v[j], acc[j][4]);
          acc[j][5] = fmaf(z1.y, v[j], acc[j][5]);
          acc[j][6] = fmaf(z1.z, v[j], acc[j][6]);
          acc[j][7] = fmaf(z1.w, v[j], acc[j][7]);
        }
      }
    }
    __syncthreads();  // this tile's buffers are read: the next iteration refills them
  }
  float* out = partial + (static_cast<long long>(blockIdx.y) * gridDim.x + blockIdx.x) * kChans * kCols;
#pragma unroll
  for (int j = 0; j < kTapSlots; ++j) {
    const int t = t0 + 16 * j;
    if (t >= kCols) continue;
#pragma unroll
    for (int c = 0; c < 8; ++c) out[(ch + c) * kCols + t] = acc[j][c];
  }
}

// dw[k][tap] += the blocks' sums in block order; db[k] += their bias column.
__global__ void conv_few_fp32_wgrad_reduce_kernel(int k, int blocks, const float* __restrict__ partial,
                                                  float* __restrict__ dw, float* __restrict__ db) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= k * kCols) return;
  const int kb = o / (kChans * kCols), rem = o - kb * (kChans * kCols);
  const int kk = rem / kCols, t = rem - kk * kCols;
  const float* p = partial + static_cast<long long>(kb) * blocks * kChans * kCols + rem;
  float sum = 0.f;
  for (int i = 0; i < blocks; ++i) sum += p[static_cast<long long>(i) * kChans * kCols];
  const int ch = kb * kChans + kk;
  if (t < kTaps)
    dw[static_cast<long long>(ch) * kTaps + t] += sum;
  else if (db)
    db[ch] += sum;
}

int max_smem_optin() {
  int dev = 0, v = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return v;
}

}  // namespace

bool conv_few_fp32_supported(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
  if (xs.c != kC || g.kernel_h != kR || g.kernel_w != kS || g.stride_h != kSH || g.stride_w != kSW)
    return false;
  if (g.pad_h < 0 || g.pad_w < 0 || g.num_output <= 0 || g.num_output % kChans != 0) return false;
  if (ys.c != g.num_output || ys.n != xs.n || ys.w < 1 || ys.w > kMaxWo || ys.h < 1) return false;
  if (ys.h != conv_out_dim(xs.h, kR, kSH, g.pad_h) || ys.w != conv_out_dim(xs.w, kS, kSW, g.pad_w))
    return false;
  const std::int64_t xhw = std::int64_t(xs.h) * xs.w, yhw = std::int64_t(ys.h) * ys.w;
  if (xs.nstride() % xhw || ys.nstride() % yhw || xs.nstride() / xhw != kC)
    return false;                                                            // dense input pixels
  if ((ys.nstride() / yhw) % 4 != 0 || ys.nstride() % 4 != 0) return false;  // 16-byte output pixels
  if (std::int64_t(xs.n) * xs.nstride() >= (std::int64_t(1) << 31) ||
      std::int64_t(ys.n) * ys.nstride() >= (std::int64_t(1) << 31))
    return false;
  return std::max(fwd_smem(make_args(xs, g, ys, kSlots)), wgrad_smem(make_args(xs, g, ys, kSlotsW), true)) <=
         max_smem_optin();
}

void conv_few_fp32_fwd(const Nchw& xs, const float* x, const ConvGeom& g, const float* w, const float* b,
                       bool relu, const Nchw& ys, float* y, cudaStream_t stream) {
  if (!conv_few_fp32_supported(xs, g, ys))
    throw Error("conv_few_fp32_fwd: unsupported convolution or device");
  if (!aligned16(y)) throw Error("conv_few_fp32_fwd: the output is not 16-byte aligned");
  const Args a = make_args(xs, g, ys, kSlots);
  if (a.tiles == 0) return;
  const int smem = fwd_smem(a);
  CUDA_CHECK(
      cudaFuncSetAttribute(conv_few_fp32_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(blocks_for(a), a.k / kChans);
  conv_few_fp32_fwd_kernel<<<grid, kThreads, smem, stream>>>(a, x, w, b, relu, y);
  KERNEL_CHECK("conv_few_fp32_fwd_kernel");
}

std::size_t conv_few_fp32_wgrad_scratch(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
  const Args a = make_args(xs, g, ys, kSlotsW);
  return std::size_t(a.k / kChans) * blocks_for(a) * kChans * kCols;
}

void conv_few_fp32_bwd_filter(const Nchw& xs, const float* x, const ConvGeom& g, const Nchw& ys,
                              const float* y, const float* dy, bool relu, float* dw, float* db,
                              float* partial, cudaStream_t stream) {
  if (!conv_few_fp32_supported(xs, g, ys))
    throw Error("conv_few_fp32_bwd_filter: unsupported convolution or device");
  if (!aligned16(dy) || (relu && !aligned16(y)))
    throw Error("conv_few_fp32_bwd_filter: the output or its gradient is not 16-byte aligned");
  const Args a = make_args(xs, g, ys, kSlotsW);
  if (a.tiles == 0) return;
  const int smem = wgrad_smem(a, relu);
  const unsigned bx = blocks_for(a);
  const dim3 grid(bx, a.k / kChans);
  if (relu) {
    CUDA_CHECK(cudaFuncSetAttribute(conv_few_fp32_wgrad_kernel<true>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    conv_few_fp32_wgrad_kernel<true><<<grid, kThreads, smem, stream>>>(a, x, y, dy, partial);
  } else {
    CUDA_CHECK(cudaFuncSetAttribute(conv_few_fp32_wgrad_kernel<false>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    conv_few_fp32_wgrad_kernel<false><<<grid, kThreads, smem, stream>>>(a, x, y, dy, partial);
  }
  KERNEL_CHECK("conv_few_fp32_wgrad_kernel");
  const int outputs = a.k * kCols;
  conv_few_fp32_wgrad_reduce_kernel<<<grid_for(outputs, kThreads), kThreads, 0, stream>>>(
      a.k, static_cast<int>(bx), partial, dw, db);
  KERNEL_CHECK("conv_few_fp32_wgrad_reduce_kernel");
}

}  // namespace incept::kernels

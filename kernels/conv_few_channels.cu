// Implicit-GEMM convolution for inputs with few channels on bf16 tensor cores
// (conv_few_channels_gpu.h), written with mma.sync m16n8k16 (bf16 in, fp32 sums).
//
// A tile is a segment of 64 consecutive output pixels of one output row. Its input window is
// R rows of ((64 - 1) * stride_w + S) * C contiguous channels-last values ("the patch", copied
// to shared memory with coalesced loads). For window row r, output pixel px reads the run of
// L = S * C taps that starts px * stride_w * C further along the patch row, so the tile's
// tap matrix A[px][r * L + q] = patch[r][px * stride_w * C + q] never has to be written out:
// the MMA fragments are loaded straight from the patch. In the forward pass the taps are the
// MMA's k dimension, read in pairs (stride_w * C even keeps every pair 4-byte aligned), and
// each run is padded to KS * 16 taps (KS = ceil(L / 16)) whose filter values are zero; the
// padding reads the next pixels' values (finite) or the zeroed slack.
//
// Forward (a block owns 64 output channels, blockIdx.y): D[px][n] = sum over (r, q) of
// A[px][r, q] * W[n][r, q] + b[n]; 8 warps, each 16 pixels x 32 channels. The result goes
// through shared memory to 16-byte stores.
// Weight gradient: D[n][k] = sum over px of dz[px][n] * A[px][k] over the R * S * C taps k as
// dense n8 columns (the pixels are the k dimension), dz = relu'(y) * dy formed on load; dz^T
// fragments come from a [pixel][channel] tile via ldmatrix.trans. Each
// block keeps its sums in registers over all its tiles, writes them once, and a second kernel
// adds the blocks' sums in block order to dw and db.
#include <algorithm>
#include <cstdint>

#include "engine/check.h"
#include "kernels/conv_few_channels_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/dtype_gpu.h"
#include "kernels/nhwc_view.h"

namespace incept::kernels {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;     // 8 warps
constexpr int kTileP = 64;        // output pixels per tile (one row segment)
constexpr int kTileN = 64;        // output channels per block
constexpr int kLdz = kTileN + 8;  // [pixel][channel] tiles in shared memory (bf16): 144-byte rows
constexpr int kMaxRuns = 2;       // k16 steps per window row (L <= 32)
constexpr int kMaxTaps = 192;     // R * S * C: the weight gradient keeps 3 column tiles per warp
constexpr int kMaxRows = 8;       // window rows (R)
constexpr int kSmemLimit = 48 << 10;
constexpr int kPatchRows = kMaxRows;  // patch rows a thread loads for
constexpr int kPatchPerRow = 2;       // elements per row and thread: patch_w <= kPatchPerRow * kThreads

struct FewArgs {
  int h, w, c;  // input
  NhwcArgs x;
  int ho, wo;
  NhwcArgs y;
  int kh, kw, sh, sw, ph, pw;
  int k_out;       // output channels
  int run;         // L = S * C taps per window row
  int ks;          // k16 steps per window row: ceil(L / 16)
  int patch_w;     // patch row length (elements, even): the 64 windows' span + slack
  int w_ld;        // forward filters in shared memory: elements per output channel (R * KS * 16 + 8)
  int segments;    // tiles per output row
  unsigned tiles;  // < 2^31 (checked)
};

FewArgs make_args(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
  FewArgs a{};
  a.h = xs.h, a.w = xs.w, a.c = xs.c;
  a.x = nhwc_args(xs);
  a.ho = ys.h, a.wo = ys.w;
  a.y = nhwc_args(ys);
  a.kh = g.kernel_h, a.kw = g.kernel_w, a.sh = g.stride_h, a.sw = g.stride_w, a.ph = g.pad_h, a.pw = g.pad_w;
  a.k_out = g.num_output;
  a.run = g.kernel_w * xs.c;
  a.ks = (a.run + 15) / 16;
  const int span = ((kTileP - 1) * a.sw + a.kw) * a.c;
  a.patch_w = (span + 16 + 7) / 8 * 8;  // + the last run's padding, rows 16-byte aligned
  a.w_ld = a.kh * a.ks * 16 + 8;        // +8: conflict-free B fragment loads
  a.segments = (a.wo + kTileP - 1) / kTileP;
  a.tiles = static_cast<unsigned>(std::int64_t(ys.n) * ys.h * a.segments);
  return a;
}

// Shared memory (bytes): the patch first, then the forward filters and output tile, or the
// weight gradient's dz tile (later also its bias-sum scratch).
__host__ __device__ inline int patch_bytes(const FewArgs& a) {
  return (a.kh * a.patch_w * 2 + 127) / 128 * 128;
}
__host__ __device__ inline int filter_bytes(const FewArgs& a) {
  return (kTileN * a.w_ld * 2 + 127) / 128 * 128;
}
constexpr int kZBytes = (kTileP * kLdz * 2 + 127) / 128 * 128;  // also holds kThreads * 8 floats
static_assert(kZBytes >= kThreads * 8 * 4, "bias scratch must fit the dz tile");
inline int fwd_smem(const FewArgs& a) {
  return patch_bytes(a) + filter_bytes(a) + kZBytes + kTileN * 4;
}
inline int wgrad_smem(const FewArgs& a) {
  return patch_bytes(a) + kZBytes;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

// A block's bias-gradient sums: thread t holds db[8] for channels (t % 8) * 8 + [0, 8); the
// threads with the same channels are added in thread order into out[0, kTileN). red: kThreads
// x 8 floats of shared memory that no thread still reads.
__device__ inline void block_bias_sums(const float* db, float* red, float* out) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int e = 0; e < 8; ++e) red[tid * 8 + e] = db[e];
  __syncthreads();
  if (tid < kTileN) {
    const int grp = tid / 8, e = tid % 8;
    float sum = 0.f;
    for (int t = grp; t < kThreads; t += kTileN / 8) sum += red[t * 8 + e];
    out[tid] = sum;
  }
}

__device__ inline void mma_bf16(float* d, const std::uint32_t* a, const std::uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ inline std::uint32_t lds32(const unsigned short* p) {
  return *reinterpret_cast<const std::uint32_t*>(p);
}

// Tile t: image n, output row oy, first output column ox0, and how many pixels it has.
struct Tile {
  int n, oy, ox0, count;
};
__device__ inline Tile tile_at(const FewArgs& a, unsigned t) {
  Tile s;
  const unsigned row = t / a.segments;  // 32-bit: a 64-bit division costs ~100 instructions
  const int seg = static_cast<int>(t - row * a.segments);
  s.n = static_cast<int>(row / a.ho);
  s.oy = static_cast<int>(row - static_cast<unsigned>(s.n) * a.ho);
  s.ox0 = seg * kTileP;
  s.count = min(kTileP, a.wo - s.ox0);
  return s;
}

// patch[r][e] = x[n][oy * sh - ph + r][ox0 * sw - pw + e / C][e % C], 0 outside the image and
// past the windows' span. The loads go to registers first (load_patch, issued a tile ahead so
// that their latency hides behind the current tile's products), then to shared memory
// (store_patch). Consecutive threads read consecutive elements of one input row.
struct PatchRegs {
  unsigned short v[kPatchRows * kPatchPerRow];
};
// Input pixels are dense (pixel stride C), so a patch row is one contiguous run of its input
// row: element e of patch row r is input row iy0 + r at linear position lin0 + e, inside the
// image when 0 <= lin0 + e < W * C. Thread t owns elements t, t + kThreads of each row.
__device__ inline void load_patch(const FewArgs& a, const Tile& s, const unsigned short* __restrict__ x,
                                  PatchRegs& R) {
  const int span = ((s.count - 1) * a.sw + a.kw) * a.c;
  const int iy0 = s.oy * a.sh - a.ph, lin0 = (s.ox0 * a.sw - a.pw) * a.c, row_len = a.w * a.c;
  const unsigned short* xn = x + static_cast<long long>(s.n) * a.x.ns;
#pragma unroll
  for (int k = 0; k < kPatchRows * kPatchPerRow; ++k) {
    const int r = k / kPatchPerRow, e = threadIdx.x + (k % kPatchPerRow) * kThreads;
    const int iy = iy0 + r, lin = lin0 + e;
    const bool inside = r < a.kh && e < span && static_cast<unsigned>(iy) < static_cast<unsigned>(a.h) &&
                        static_cast<unsigned>(lin) < static_cast<unsigned>(row_len);
    R.v[k] = inside ? xn[iy * row_len + lin] : static_cast<unsigned short>(0);
  }
}
__device__ inline void store_patch(const FewArgs& a, const PatchRegs& R, unsigned short* patch) {
#pragma unroll
  for (int k = 0; k < kPatchRows * kPatchPerRow; ++k) {
    const int r = k / kPatchPerRow, e = threadIdx.x + (k % kPatchPerRow) * kThreads;
    if (r < a.kh && e < a.patch_w) patch[r * a.patch_w + e] = R.v[k];
  }
}

#endif

__global__ void __launch_bounds__(kThreads, 2)
    conv_few_fwd_kernel(FewArgs a, const unsigned short* __restrict__ x, const unsigned short* __restrict__ w,
                        const bf16* __restrict__ b, bool relu, bf16* __restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned short* patch = reinterpret_cast<unsigned short*>(smem);
  unsigned short* ws = reinterpret_cast<unsigned short*>(smem + patch_bytes(a));  // [n][r][ks * 16]
  bf16* out = reinterpret_cast<bf16*>(smem + patch_bytes(a) + filter_bytes(a));   // [pixel][kLdz]
  float* bias = reinterpret_cast<float*>(smem + patch_bytes(a) + filter_bytes(a) + kZBytes);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int n0 = blockIdx.y * kTileN;
  const int n_valid = min(kTileN, a.k_out - n0);
  const int kr = a.ks * 16;  // padded taps per window row
  // filters, zero past each row's L taps and past the layer's channels
  for (int i = tid; i < kTileN * a.kh * kr; i += kThreads) {
    const int n = i / (a.kh * kr), rem = i - n * (a.kh * kr);
    const int r = rem / kr, q = rem - r * kr;
    ws[n * a.w_ld + rem] =
        (n < n_valid && q < a.run) ? w[(static_cast<long long>(n0 + n) * a.kh + r) * a.run + q] : 0;
  }
  if (tid < kTileN) bias[tid] = (b && tid < n_valid) ? __bfloat162float(b[n0 + tid]) : 0.f;

  const int mt = warp & 3;          // this warp's 16 pixels
  const int nb = (warp >> 2) * 32;  // and 32 channels (4 n8 tiles)
  PatchRegs next;
  Tile sn = tile_at(a, blockIdx.x);
  if (blockIdx.x < a.tiles) load_patch(a, sn, x, next);
  for (unsigned t = blockIdx.x; t < a.tiles; t += gridDim.x) {
    const Tile s = sn;
    __syncthreads();  // the previous tile's patch and output tile are no longer read
    store_patch(a, next, patch);
    __syncthreads();
    if (t + gridDim.x < a.tiles) {  // the next tile's loads, in flight during the products
      sn = tile_at(a, t + gridDim.x);
      load_patch(a, sn, x, next);
    }
    float acc[4][4] = {};
    const int p0 = mt * 16 + g;
    for (int r = 0; r < a.kh; ++r) {
      const unsigned short* prow = patch + r * a.patch_w;
      for (int k = 0; k < a.ks; ++k) {
        const int q = k * 16 + 2 * t4;
        std::uint32_t af[4];
        af[0] = lds32(prow + p0 * a.sw * a.c + q);
        af[1] = lds32(prow + (p0 + 8) * a.sw * a.c + q);
        af[2] = lds32(prow + p0 * a.sw * a.c + q + 8);
        af[3] = lds32(prow + (p0 + 8) * a.sw * a.c + q + 8);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const unsigned short* wr = ws + (nb + j * 8 + g) * a.w_ld + r * kr + q;
          const std::uint32_t bfr[2] = {lds32(wr), lds32(wr + 8)};
          mma_bf16(acc[j], af, bfr);
        }
      }
    }
    // bias (+ReLU), rounded once, into the output tile
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = nb + j * 8 + 2 * t4;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float v0 = acc[j][2 * h] + bias[n], v1 = acc[j][2 * h + 1] + bias[n + 1];
        if (relu) {
          v0 = v0 > 0.f ? v0 : 0.f;
          v1 = v1 > 0.f ? v1 : 0.f;
        }
        *reinterpret_cast<__nv_bfloat162*>(out + (p0 + 8 * h) * kLdz + n) = __floats2bfloat162_rn(v0, v1);
      }
    }
    __syncthreads();
    // 16-byte stores, 8 channels each
    bf16* yrow =
        y + static_cast<long long>(s.n) * a.y.ns + static_cast<long long>(s.oy * a.wo + s.ox0) * a.y.pix + n0;
    for (int i = tid; i < kTileP * (kTileN / 8); i += kThreads) {
      const int p = i / (kTileN / 8), c8 = (i % (kTileN / 8)) * 8;
      if (p < s.count && c8 < n_valid)
        *reinterpret_cast<Pack<bf16, 8>*>(yrow + p * a.y.pix + c8) =
            *reinterpret_cast<const Pack<bf16, 8>*>(out + p * kLdz + c8);
    }
  }
#else
  __trap();  // the launcher refuses devices below 8.0
#endif
}

// Each block: partial[block] = (its sum of dz^T * A as [64][cols], then its sum of dz [64]),
// cols = R * S * C taps rounded up to 8. The taps are the MMA's n8 columns, densely (tap k of
// filter row r = k / L, offset k % L in its run); warp w accumulates the column tiles w,
// w + 8, ... for all four 16-channel row tiles.
__global__ void __launch_bounds__(kThreads, 2)
    conv_few_wgrad_kernel(FewArgs a, const unsigned short* __restrict__ x, const bf16* __restrict__ y,
                          const bf16* __restrict__ dy, bool relu, float* __restrict__ partial) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kWarps = kThreads / 32;
  constexpr int kMaxColTiles = (kMaxTaps / 8 + kWarps - 1) / kWarps;
  constexpr int kPasses = kTileP * (kTileN / 8) / kThreads;  // dz loads per thread
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned short* patch = reinterpret_cast<unsigned short*>(smem);
  bf16* zs = reinterpret_cast<bf16*>(smem + patch_bytes(a));  // dz [pixel][kLdz]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int n0 = blockIdx.y * kTileN;
  const int n_valid = min(kTileN, a.k_out - n0);
  const int taps = a.kh * a.run, cols = (taps + 7) / 8 * 8;
  const int col_tiles = cols / 8;
  const int c8 = (tid % (kTileN / 8)) * 8;  // the 8 channels this thread loads dz for
  const int step = a.sw * a.c;
  // where this thread's tap column of each of its column tiles starts in the patch (-1: padding)
  int col_off[kMaxColTiles];
#pragma unroll
  for (int j = 0; j < kMaxColTiles; ++j) {
    const int k = (warp + j * kWarps) * 8 + g;
    const int r = k / a.run;
    col_off[j] = k < taps ? r * a.patch_w + (k - r * a.run) : -1;
  }
  float db[8] = {};
  float acc[kMaxColTiles][4][4] = {};

  // dz = relu'(y) * dy of tile s, loaded into registers a tile ahead like the patch
  Pack<bf16, 8> dv[kPasses], yv[kPasses];
  auto load_dz = [&](const Tile& s) {
    const long long yo = static_cast<long long>(s.n) * a.y.ns +
                         static_cast<long long>(s.oy * a.wo + s.ox0) * a.y.pix + n0 + c8;
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      const int p = (tid + it * kThreads) / (kTileN / 8);
      if (p < s.count && c8 < n_valid) {
        dv[it] = *reinterpret_cast<const Pack<bf16, 8>*>(dy + yo + p * a.y.pix);
        if (relu) yv[it] = *reinterpret_cast<const Pack<bf16, 8>*>(y + yo + p * a.y.pix);
      }
    }
  };
  PatchRegs next;
  Tile sn = tile_at(a, blockIdx.x);
  if (blockIdx.x < a.tiles) {
    load_patch(a, sn, x, next);
    load_dz(sn);
  }
  for (unsigned t = blockIdx.x; t < a.tiles; t += gridDim.x) {
    const Tile s = sn;
    __syncthreads();  // the previous tile's products are done with the patch and dz
    store_patch(a, next, patch);
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      const int p = (tid + it * kThreads) / (kTileN / 8);
      const bool live = p < s.count && c8 < n_valid;
      Pack<bf16, 8> z;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const bool pass = live && (!relu || __bfloat162float(yv[it].v[e]) > 0.f);
        z.v[e] = pass ? dv[it].v[e] : __float2bfloat16(0.f);
        db[e] += __bfloat162float(z.v[e]);
      }
      *reinterpret_cast<Pack<bf16, 8>*>(zs + p * kLdz + c8) = z;
    }
    __syncthreads();
    if (t + gridDim.x < a.tiles) {  // the next tile's loads, in flight during the products
      sn = tile_at(a, t + gridDim.x);
      load_patch(a, sn, x, next);
      load_dz(sn);
    }
    for (int kp = 0; kp < kTileP; kp += 16) {  // k16 steps over the pixels
      // dz^T fragments of the four 16-channel row tiles (ldmatrix.trans of [pixel][channel])
      std::uint32_t af[4][4];
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const int mat = lane >> 3, row = lane & 7;
        const bf16* src = zs + (kp + (mat >> 1) * 8 + row) * kLdz + m * 16 + (mat & 1) * 8;
        const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(src));
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(af[m][0]), "=r"(af[m][1]), "=r"(af[m][2]), "=r"(af[m][3])
                     : "r"(addr));
      }
      const int pa = kp + 2 * t4;  // this thread's pixel pairs: pa, pa + 1 and pa + 8, pa + 9
#pragma unroll
      for (int j = 0; j < kMaxColTiles; ++j) {
        if (warp + j * kWarps >= col_tiles) continue;
        std::uint32_t bfr[2] = {0u, 0u};
        if (col_off[j] >= 0) {
          const unsigned short* pc = patch + col_off[j];
          bfr[0] = std::uint32_t(pc[pa * step]) | (std::uint32_t(pc[(pa + 1) * step]) << 16);
          bfr[1] = std::uint32_t(pc[(pa + 8) * step]) | (std::uint32_t(pc[(pa + 9) * step]) << 16);
        }
#pragma unroll
        for (int m = 0; m < 4; ++m) mma_bf16(acc[j][m], af[m], bfr);
      }
    }
  }

  // this block's sums: rows n = m * 16 + g (+8), columns ct * 8 + 2 t4 (+1) of [64][cols]
  float* out =
      partial + (static_cast<long long>(blockIdx.y) * gridDim.x + blockIdx.x) * (kTileN * cols + kTileN);
#pragma unroll
  for (int j = 0; j < kMaxColTiles; ++j) {
    const int ct = warp + j * kWarps;
    if (ct >= col_tiles) continue;
#pragma unroll
    for (int m = 0; m < 4; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float* o = out + (m * 16 + g + 8 * h) * cols + ct * 8 + 2 * t4;
        o[0] = acc[j][m][2 * h];
        o[1] = acc[j][m][2 * h + 1];
      }
  }
  __syncthreads();  // the dz tile becomes the bias sums' scratch
  block_bias_sums(db, reinterpret_cast<float*>(zs), out + kTileN * cols);
#else
  __trap();
#endif
}

// dw[n][k] += sum over blocks of partial; db[n] likewise. One thread per output, blocks in order.
__global__ void conv_few_wgrad_reduce_kernel(FewArgs a, int blocks_x, const float* __restrict__ partial,
                                             bf16* __restrict__ dw, bf16* __restrict__ db) {
  const int taps = a.kh * a.run, cols = (taps + 7) / 8 * 8;
  const int per_n = taps + 1;
  const long long stride = static_cast<long long>(kTileN) * cols + kTileN;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < a.k_out * per_n; i += gridDim.x * blockDim.x) {
    const int n = i / per_n, k = i - n * per_n;
    const int by = n / kTileN, nl = n % kTileN;
    const long long off =
        k < taps ? static_cast<long long>(nl) * cols + k : kTileN * static_cast<long long>(cols) + nl;
    const float* p = partial + static_cast<long long>(by) * blocks_x * stride + off;
    float sum = 0.f;
    for (int bx = 0; bx < blocks_x; ++bx) sum += p[bx * stride];
    if (k < taps) {
      bf16& d = dw[static_cast<long long>(n) * taps + k];
      d = __float2bfloat16(__bfloat162float(d) + sum);
    } else if (db) {
      db[n] = __float2bfloat16(__bfloat162float(db[n]) + sum);
    }
  }
}

// ---- The quad path: stride_w even, C <= 4 (GoogLeNet's conv1) ------------------------------
//
// Each input pixel becomes a quad of 4 values in shared memory (its C channels, then zeros), so
// a pixel is 8 bytes and, with an even stride, the window of every output pixel starts 16-byte
// aligned: both operands load with ldmatrix (one instruction per 8x8 matrix) instead of one
// 32-bit load per register. Window row r of output pixel px covers the KS * 4 quads from patch
// pixel px * stride_w on (KS = ceil(S / 4)): the taps past S pixels and past C channels have
// zero filter values (forward) or are dropped (weight gradient).
//
// The input rows under a tile are read as aligned 32-bit words (the raw row segment, so rows of
// W * C elements must be even) into registers a tile ahead, and scattered into the quads after
// the tile's products; the quads' unused channels are zeroed once. Patches (and the weight
// gradient's dz tiles) are double-buffered, so a tile costs one barrier.
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

bool quad_path(const FewArgs& a) {
  if (a.c > 4 || a.sw % 2 != 0 || a.kw > 4 * kQuadMaxKs || a.kh > kMaxRows || (a.w * a.c) % 2 != 0 ||
      a.x.ns % 2 != 0)
    return false;
  const QuadArgs q = make_quad(a);
  return a.kh * q.px / 2 <= kPairIters * kThreads && q.nw <= kQuadMaxNw;
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
  constexpr int kPasses = kTileP * (kTileN / 8) / kThreads;  // dz loads per thread
  constexpr int kQuadPairs = (kQuadMaxNw + 1) / 2;           // ldmatrix.x4 per k16 step
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
  auto load_dz = [&](const Tile& s) {
    const long long yo = static_cast<long long>(s.n) * a.y.ns +
                         static_cast<long long>(s.oy * a.wo + s.ox0) * a.y.pix + n0 + c8;
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      const int p = (tid + it * kThreads) / (kTileN / 8);
      if (p < s.count && c8 < n_valid) {
        dv[it] = *reinterpret_cast<const Pack<bf16, 8>*>(dy + yo + p * a.y.pix);
        if (relu) yv[it] = *reinterpret_cast<const Pack<bf16, 8>*>(y + yo + p * a.y.pix);
      }
    }
  };
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

unsigned fwd_blocks(const FewArgs& a) {
  return static_cast<unsigned>(std::min<long long>(a.tiles, 2LL * sm_count()));  // 2 blocks fit an SM
}
unsigned wgrad_blocks(const FewArgs& a) {
  return static_cast<unsigned>(std::min<long long>(a.tiles, 2LL * sm_count()));
}

}  // namespace

bool conv_few_channels_supported(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
  if (g.num_output <= 0 || g.num_output % 16 != 0 || ys.c != g.num_output || ys.n != xs.n) return false;
  if (g.kernel_h < 1 || g.kernel_h > kMaxRows || g.kernel_w < 1 || g.stride_w < 1 || g.stride_h < 1)
    return false;
  const int run = g.kernel_w * xs.c;
  if (run > kMaxRuns * 16 || (g.stride_w * xs.c) % 2 != 0) return false;  // 4-byte tap pairs
  if (g.kernel_h * run > kMaxTaps) return false;
  const std::int64_t xhw = std::int64_t(xs.h) * xs.w, yhw = std::int64_t(ys.h) * ys.w;
  if (xhw == 0 || yhw == 0 || xs.nstride() % xhw || ys.nstride() % yhw || xs.nstride() / xhw != xs.c)
    return false;  // the input's pixels are dense: its rows are contiguous
  if ((ys.nstride() / yhw) % 8 != 0 || ys.nstride() % 8 != 0) return false;  // 16-byte pixels and images
  if (std::int64_t(ys.n) * ys.h * ys.w >= (std::int64_t(1) << 31) ||         // tile indices
      std::int64_t(xs.n) * xs.nstride() >= (std::int64_t(1) << 31) ||
      std::int64_t(ys.n) * ys.nstride() >= (std::int64_t(1) << 31))
    return false;
  const FewArgs a = make_args(xs, g, ys);
  if (fwd_smem(a) > kSmemLimit || wgrad_smem(a) > kSmemLimit || a.patch_w > kPatchPerRow * kThreads ||
      a.kh > kPatchRows)
    return false;
  return compute_capability() >= 80;
}

void conv_few_channels_fwd(const Nchw& xs, const bf16* x, const ConvGeom& g, const bf16* w, const bf16* b,
                           bool relu, const Nchw& ys, bf16* y, cudaStream_t stream) {
  if (!conv_few_channels_supported(xs, g, ys))
    throw Error("conv_few_channels_fwd: unsupported convolution or device");
  if (!aligned16(y)) throw Error("conv_few_channels_fwd: the output is not 16-byte aligned");
  const FewArgs a = make_args(xs, g, ys);
  const dim3 grid(fwd_blocks(a), (a.k_out + kTileN - 1) / kTileN);
  if (quad_path(a) && reinterpret_cast<std::uintptr_t>(x) % 4 == 0) {
    const QuadArgs q = make_quad(a);
    const dim3 qgrid(static_cast<unsigned>(std::min<long long>(a.tiles, 3LL * sm_count())), grid.y);  // 3 fit
    auto kernel = a.c == 1   ? conv_quad_fwd_kernel<1>
                  : a.c == 2 ? conv_quad_fwd_kernel<2>
                  : a.c == 3 ? conv_quad_fwd_kernel<3>
                             : conv_quad_fwd_kernel<4>;
    kernel<<<qgrid, kThreads, quad_fwd_smem(q), stream>>>(q, reinterpret_cast<const unsigned short*>(x), w, b,
                                                          relu, y);
    KERNEL_CHECK("conv_quad_fwd_kernel");
    return;
  }
  conv_few_fwd_kernel<<<grid, kThreads, fwd_smem(a), stream>>>(
      a, reinterpret_cast<const unsigned short*>(x), reinterpret_cast<const unsigned short*>(w), b, relu, y);
  KERNEL_CHECK("conv_few_fwd_kernel");
}

std::size_t conv_few_channels_wgrad_scratch(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
  const FewArgs a = make_args(xs, g, ys);
  const std::size_t blocks_y = (a.k_out + kTileN - 1) / kTileN;
  if (quad_path(a))  // the blocks' sums, then the reduction's chunk sums
    return blocks_y * wgrad_blocks(a) * (std::size_t(kTileN) * make_quad(a).nt * 8 + kTileN) +
           std::size_t(kReduceChunks) * a.k_out * (a.kh * a.run + 1);
  return blocks_y * wgrad_blocks(a) * (std::size_t(kTileN) * ((a.kh * a.run + 7) / 8 * 8) + kTileN);
}

void conv_few_channels_bwd_filter(const Nchw& xs, const bf16* x, const ConvGeom& g, const Nchw& ys,
                                  const bf16* y, const bf16* dy, bool relu, bf16* dw, bf16* db,
                                  float* partial, cudaStream_t stream) {
  if (!conv_few_channels_supported(xs, g, ys))
    throw Error("conv_few_channels_bwd_filter: unsupported convolution or device");
  if (!aligned16(dy) || (relu && !aligned16(y)))
    throw Error("conv_few_channels_bwd_filter: the output or its gradient is not 16-byte aligned");
  const FewArgs a = make_args(xs, g, ys);
  const unsigned bx = wgrad_blocks(a);
  const dim3 grid(bx, (a.k_out + kTileN - 1) / kTileN);
  if (quad_path(a) && reinterpret_cast<std::uintptr_t>(x) % 4 == 0) {
    const QuadArgs q = make_quad(a);
    auto kernel = a.c == 1   ? conv_quad_wgrad_kernel<1>
                  : a.c == 2 ? conv_quad_wgrad_kernel<2>
                  : a.c == 3 ? conv_quad_wgrad_kernel<3>
                             : conv_quad_wgrad_kernel<4>;
    kernel<<<grid, kThreads, quad_wgrad_smem(q), stream>>>(q, reinterpret_cast<const unsigned short*>(x), y,
                                                           dy, relu, partial);
    KERNEL_CHECK("conv_quad_wgrad_kernel");
    const int outputs = a.k_out * (a.kh * a.kw * a.c + 1);
    float* tmp = partial + std::size_t(grid.y) * bx * (std::size_t(kTileN) * q.nt * 8 + kTileN);
    const unsigned rb = (outputs + 127) / 128;
    conv_quad_reduce_chunks_kernel<<<dim3(rb, kReduceChunks), 128, 0, stream>>>(q, static_cast<int>(bx),
                                                                                partial, tmp);
    KERNEL_CHECK("conv_quad_reduce_chunks_kernel");
    conv_quad_reduce_final_kernel<<<rb, 128, 0, stream>>>(q, tmp, dw, db);
    KERNEL_CHECK("conv_quad_reduce_final_kernel");
    return;
  }
  conv_few_wgrad_kernel<<<grid, kThreads, wgrad_smem(a), stream>>>(
      a, reinterpret_cast<const unsigned short*>(x), y, dy, relu, partial);
  KERNEL_CHECK("conv_few_wgrad_kernel");
  const int outputs = a.k_out * (a.kh * a.run + 1);
  conv_few_wgrad_reduce_kernel<<<grid_for(outputs, kThreads), kThreads, 0, stream>>>(a, static_cast<int>(bx),
                                                                                     partial, dw, db);
  KERNEL_CHECK("conv_few_wgrad_reduce_kernel");
}

}  // namespace incept::kernels

// Implicit-GEMM convolution for inputs with few channels on bf16 tensor cores
// (conv_few_channels_gpu.h), written with mma.sync m16n8k16 (bf16 in, fp32 sums): the launchers
// and the general path. Convolutions with an even horizontal stride and at most 4 channels
// (conv1) take the quad path instead (conv_few_quad.cu); conv_few_channels_impl.cuh has what
// the two share.
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
#include "kernels/conv_few_channels_impl.cuh"
#include "kernels/dtype_gpu.h"

namespace incept::kernels {
namespace {

using namespace few;

constexpr int kMaxRuns = 2;    // k16 steps per window row (L <= 32)
constexpr int kMaxTaps = 192;  // R * S * C: the weight gradient keeps 3 column tiles per warp
constexpr int kSmemLimit = 48 << 10;
constexpr int kPatchRows = kMaxRows;  // patch rows a thread loads for
constexpr int kPatchPerRow = 2;       // elements per row and thread: patch_w <= kPatchPerRow * kThreads

// Shared memory (bytes): the patch first, then the forward filters and output tile, or the
// weight gradient's dz tile (later also its bias-sum scratch).
__host__ __device__ inline int patch_bytes(const FewArgs& a) {
  return (a.kh * a.patch_w * 2 + 127) / 128 * 128;
}
__host__ __device__ inline int filter_bytes(const FewArgs& a) {
  return (kTileN * a.w_ld * 2 + 127) / 128 * 128;
}
inline int fwd_smem(const FewArgs& a) {
  return patch_bytes(a) + filter_bytes(a) + kZBytes + kTileN * 4;
}
inline int wgrad_smem(const FewArgs& a) {
  return patch_bytes(a) + kZBytes;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

__device__ inline std::uint32_t lds32(const unsigned short* p) {
  return *reinterpret_cast<const std::uint32_t*>(p);
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
  constexpr int kPasses = kDzPasses;
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
  auto load_dz = [&](const Tile& s) { load_dz_tile(a, s, y, dy, relu, n0, n_valid, c8, dv, yv); };
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

unsigned fwd_blocks(const FewArgs& a) {
  return static_cast<unsigned>(std::min<long long>(a.tiles, 2LL * sm_count()));  // 2 blocks fit an SM
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
  if (quad_path(a) && reinterpret_cast<std::uintptr_t>(x) % 4 == 0) {
    quad_fwd(a, x, w, b, relu, y, stream);
    return;
  }
  const dim3 grid(fwd_blocks(a), (a.k_out + kTileN - 1) / kTileN);
  conv_few_fwd_kernel<<<grid, kThreads, fwd_smem(a), stream>>>(
      a, reinterpret_cast<const unsigned short*>(x), reinterpret_cast<const unsigned short*>(w), b, relu, y);
  KERNEL_CHECK("conv_few_fwd_kernel");
}

std::size_t conv_few_channels_wgrad_scratch(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
  const FewArgs a = make_args(xs, g, ys);
  const std::size_t blocks_y = (a.k_out + kTileN - 1) / kTileN;
  if (quad_path(a)) return quad_wgrad_scratch(a);
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
    quad_bwd_filter(a, x, y, dy, relu, dw, db, partial, stream);
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

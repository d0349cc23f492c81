// Internal to the implicit-GEMM kernels of kernels/conv_few_channels_gpu.h: what the general
// path (conv_few_channels.cu) and the quad path (conv_few_quad.cu) share. Not a public API.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/device_facts.h"
#include "kernels/dtype_gpu.h"
#include "kernels/nhwc_view.h"
#include "kernels/shapes.h"

namespace incept::kernels::few {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;     // 8 warps
constexpr int kTileP = 64;        // output pixels per tile (one row segment)
constexpr int kTileN = 64;        // output channels per block
constexpr int kLdz = kTileN + 8;  // [pixel][channel] tiles in shared memory (bf16): 144-byte rows
constexpr int kMaxRows = 8;       // window rows (R)
constexpr int kZBytes = (kTileP * kLdz * 2 + 127) / 128 * 128;  // also holds kThreads * 8 floats
static_assert(kZBytes >= kThreads * 8 * 4, "bias scratch must fit the dz tile");

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

inline FewArgs make_args(const Nchw& xs, const ConvGeom& g, const Nchw& ys) {
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

// Blocks of a weight-gradient launch (2 fit an SM): the number of partial sums, so the order
// in which they are added, depends on the device's SM count only.
inline unsigned wgrad_blocks(const FewArgs& a) {
  return static_cast<unsigned>(std::min<long long>(a.tiles, 2LL * sm_count()));
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

constexpr int kDzPasses = kTileP * (kTileN / 8) / kThreads;  // dz vectors a thread loads per tile

// A weight gradient's dy (and, with relu, y) of tile s for this thread's 8 channels c8 of the
// block's n0 + [0, kTileN): pass it is pixel (threadIdx.x + it * kThreads) / 8. Into registers a
// tile ahead (nothing reads them until the tile's dz is formed); pixels past the tile and
// channels past n_valid are left as they were.
__device__ inline void load_dz_tile(const FewArgs& a, const Tile& s, const bf16* __restrict__ y,
                                    const bf16* __restrict__ dy, bool relu, int n0, int n_valid, int c8,
                                    Pack<bf16, 8>* dv, Pack<bf16, 8>* yv) {
  const long long yo =
      static_cast<long long>(s.n) * a.y.ns + static_cast<long long>(s.oy * a.wo + s.ox0) * a.y.pix + n0 + c8;
#pragma unroll
  for (int it = 0; it < kDzPasses; ++it) {
    const int p = (threadIdx.x + it * kThreads) / (kTileN / 8);
    if (p < s.count && c8 < n_valid) {
      dv[it] = *reinterpret_cast<const Pack<bf16, 8>*>(dy + yo + p * a.y.pix);
      if (relu) yv[it] = *reinterpret_cast<const Pack<bf16, 8>*>(y + yo + p * a.y.pix);
    }
  }
}

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

#endif

// The quad path (conv_few_quad.cu): even horizontal stride, at most 4 channels. Whether it takes
// this convolution, the weight-gradient scratch it needs (floats), and its launches (x 4-byte
// aligned; the caller checked conv_few_channels_supported and the other alignments).
bool quad_path(const FewArgs& a);
std::size_t quad_wgrad_scratch(const FewArgs& a);
void quad_fwd(const FewArgs& a, const bf16* x, const bf16* w, const bf16* b, bool relu, bf16* y,
              cudaStream_t stream);
void quad_bwd_filter(const FewArgs& a, const bf16* x, const bf16* y, const bf16* dy, bool relu, bf16* dw,
                     bf16* db, float* partial, cudaStream_t stream);

}  // namespace incept::kernels::few

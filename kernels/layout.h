// Channels-last (NHWC) addressing and the host-side permutations between the two layouts.
//
// The GPU net may keep activations NHWC (bf16 tensor cores want channels innermost) while
// the plan, the CPU reference and every host API stay NCHW with KCRS filters. One Nchw shape
// describes a view in either layout; only the addressing differs:
//   NCHW: (n, c, h, w) at n * nstride() + (c * H + h) * W + w
//   NHWC: (n, c, h, w) at n * nstride() + (h * W + w) * P + c,  P = nstride() / (H * W)
// A channel slice [c0, c0 + C) of a concat output with C_total channels has the same
// nstride() = C_total * H * W in both; its pointer starts at c0 * H * W (NCHW) or c0 (NHWC).
// Filters of a channels-last convolution are KRSC; an inner product whose input is NHWC with
// H * W > 1 sees its weights [M, C, H, W] as [M, H, W, C]: the same permutation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/shapes.h"

namespace incept {

constexpr std::int64_t nchw_offset(const Nchw& s, int n, int c, int h, int w) {
  return n * s.nstride() + (std::int64_t(c) * s.h + h) * s.w + w;
}
constexpr std::int64_t nhwc_pixel_stride(const Nchw& s) {
  return std::int64_t(s.h) * s.w != 0 ? s.nstride() / (std::int64_t(s.h) * s.w) : s.c;
}
constexpr std::int64_t nhwc_offset(const Nchw& s, int n, int c, int h, int w) {
  return n * s.nstride() + (std::int64_t(h) * s.w + w) * nhwc_pixel_stride(s) + c;
}
// Offset of channel c0's slice start within its parent (in elements) for either layout.
constexpr std::int64_t channel_slice_offset(int c0, int h, int w, bool nhwc) {
  return nhwc ? c0 : std::int64_t(c0) * h * w;
}

// [A][B][R] -> [A][R][B] (KCRS -> KRSC with A = K, B = C, R = R*S), and the inverse.
template <typename T>
void permute_abr_to_arb(const T* src, int a, int b, int r, T* dst) {
  for (int i = 0; i < a; ++i)
    for (int j = 0; j < b; ++j)
      for (int k = 0; k < r; ++k)
        dst[(std::int64_t(i) * r + k) * b + j] = src[(std::int64_t(i) * b + j) * r + k];
}
template <typename T>
void permute_arb_to_abr(const T* src, int a, int b, int r, T* dst) {
  for (int i = 0; i < a; ++i)
    for (int j = 0; j < b; ++j)
      for (int k = 0; k < r; ++k)
        dst[(std::int64_t(i) * b + j) * r + k] = src[(std::int64_t(i) * r + k) * b + j];
}

// Dense NCHW [n, c, h, w] <-> dense NHWC (host, for uploads, read-back and tests).
template <typename T>
std::vector<T> nchw_to_nhwc(const std::vector<T>& v, int n, int c, int h, int w) {
  std::vector<T> out(v.size());
  for (int i = 0; i < n; ++i)
    permute_abr_to_arb(v.data() + std::size_t(i) * c * h * w, 1, c, h * w,
                       out.data() + std::size_t(i) * c * h * w);
  return out;
}
template <typename T>
std::vector<T> nhwc_to_nchw(const std::vector<T>& v, int n, int c, int h, int w) {
  std::vector<T> out(v.size());
  for (int i = 0; i < n; ++i)
    permute_arb_to_abr(v.data() + std::size_t(i) * c * h * w, 1, c, h * w,
                       out.data() + std::size_t(i) * c * h * w);
  return out;
}

}  // namespace incept

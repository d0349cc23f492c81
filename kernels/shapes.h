// Shapes and geometry shared by the CPU references and the GPU kernels of every op, so
// the two are called with the same description. Host and device code may include this.
//
// Activations are NCHW. A view may have a batch stride larger than C*H*W: that is how an
// inception branch writes straight into its channel slice of the concat output (the view
// starts at channel offset c0 of the big tensor and its n_stride is C_total*H*W).
#pragma once

#include <cstdint>

namespace incept {

// Shape of an NCHW activation view. Element (n, c, h, w) lives at
// n * nstride() + (c * H + h) * W + w.
struct Nchw {
  int n = 0, c = 0, h = 0, w = 0;
  std::int64_t n_stride = 0;  // elements between images; 0 means dense (c*h*w)

  constexpr std::int64_t image() const { return std::int64_t(c) * h * w; }
  constexpr std::int64_t nstride() const { return n_stride ? n_stride : image(); }
  constexpr std::int64_t count() const { return std::int64_t(n) * image(); }
  constexpr bool dense() const { return nstride() == image(); }
  constexpr bool operator==(const Nchw& o) const {
    return n == o.n && c == o.c && h == o.h && w == o.w && nstride() == o.nstride();
  }
};

// Convolution: filters KCRS (K = num_output, C = input channels), optional bias[K].
// Output size uses Caffe's (floor) rule: (H + 2 pad - kernel) / stride + 1.
struct ConvGeom {
  int num_output = 0;
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  bool bias = true;
};

constexpr int conv_out_dim(int in, int kernel, int stride, int pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

enum class PoolMethod { kMax = 0, kAve = 1 };

struct PoolGeom {
  PoolMethod method = PoolMethod::kMax;
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  bool global = false;  // kernel = whole input
};

// Caffe's pooling output size: CEIL rounding, then "if padded, the last window must start
// inside the image (not in the padding)".
constexpr int pool_out_dim(int in, int kernel, int stride, int pad) {
  int out = (in + 2 * pad - kernel + stride - 1) / stride + 1;  // ceil((in+2p-k)/s) + 1
  if (pad > 0 && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Pooling geometry with `global` resolved against the input (kernel = H x W, stride 1, pad 0).
constexpr PoolGeom pool_resolve(const Nchw& x, const PoolGeom& g) {
  if (!g.global) return g;
  PoolGeom r = g;
  r.kernel_h = x.h;
  r.kernel_w = x.w;
  r.stride_h = r.stride_w = 1;
  r.pad_h = r.pad_w = 0;
  r.global = false;
  return r;
}

// Pooling output shape (N, C, Ho, Wo), dense, with Caffe's CEIL rule.
constexpr Nchw pool_out_shape(const Nchw& x, const PoolGeom& g0) {
  const PoolGeom g = pool_resolve(x, g0);
  return Nchw{x.n, x.c, pool_out_dim(x.h, g.kernel_h, g.stride_h, g.pad_h),
              pool_out_dim(x.w, g.kernel_w, g.stride_w, g.pad_w)};
}

// LRN across channels (Caffe): scale = k + alpha/local_size * sum_{window} x^2,
// y = x * scale^-beta. local_size must be odd.
struct LrnGeom {
  int local_size = 5;
  float alpha = 1e-4f;
  float beta = 0.75f;
  float k = 1.f;
};

// Inner product: y[N, M] = x[N, K] * W[M, K]^T + b[M] (Caffe's layout, transpose = false).
struct FcGeom {
  int num_output = 0;  // M
  bool bias = true;
};

}  // namespace incept

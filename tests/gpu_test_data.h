// Helpers for the GPU-vs-CPU tests (test_gpu_*.cpp): fresh printed seeds, host<->device
// transfers in fp32 or bf16, poisoned outputs, and channel-slice views of a bigger tensor
// (NCHW, and channels-last: the same views addressed as in kernels/layout.h).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/owners.h"
#include "kernels/dtype_gpu.h"
#include "kernels/input_transform_gpu.h"
#include "kernels/layout.h"
#include "kernels/shapes.h"
#include "kernels/transform_ref.h"
#include "testing/test_util.h"

namespace incept::gputest {

// Prints one check's relative error against its limit and expects it below the limit.
inline void report(const std::string& what, double err, double limit) {
  std::printf("  %-64s rel err %.3g (limit %.0e)\n", what.c_str(), err, limit);
  EXPECT_LT(err, limit) << what;
}

// A fresh seed per call (printed, so a failure can be replayed with INCEPT_TEST_SEED).
inline std::uint64_t fresh_seed(const char* what) {
  static std::uint64_t base = [] {
    const char* env = std::getenv("INCEPT_TEST_SEED");
    return env ? std::strtoull(env, nullptr, 10)
               : (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  }();
  static std::uint64_t counter = 0;
  const std::uint64_t s = base + 7919 * counter++;
  std::printf("  [seed] %s: %llu (INCEPT_TEST_SEED=%llu)\n", what, (unsigned long long)s,
              (unsigned long long)base);
  return s;
}

template <typename T>
constexpr kernels::DType dtype_of() {
  return kernels::DTypeOf<T>::value;
}

// Rounds host values to what the device dtype holds, so the CPU reference sees the same inputs.
template <typename T>
std::vector<float> rounded(std::vector<float> v) {
  if constexpr (dtype_of<T>() == kernels::DType::kBF16)
    for (auto& x : v) x = kernels::bf16_bits_to_f32(kernels::f32_to_bf16_bits(x));
  return v;
}

template <typename T>
DeviceBuffer upload(const std::vector<float>& v) {
  DeviceBuffer d(v.size() * sizeof(T));
  if constexpr (dtype_of<T>() == kernels::DType::kF32) {
    d.upload(v.data(), v.size() * 4);
  } else {
    std::vector<std::uint16_t> b(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) b[i] = kernels::f32_to_bf16_bits(v[i]);
    d.upload(b.data(), b.size() * 2);
  }
  return d;
}

// All 0xFF bytes: NaN in fp32 and bf16, so unwritten elements fail every comparison.
template <typename T>
DeviceBuffer poisoned(std::size_t n) {
  DeviceBuffer d(n * sizeof(T));
  d.fill_bytes(0xFF);
  return d;
}

template <typename T>
std::vector<float> download(const DeviceBuffer& d, std::size_t n) {
  std::vector<float> v(n);
  CUDA_CHECK(cudaDeviceSynchronize());
  if constexpr (dtype_of<T>() == kernels::DType::kF32) {
    d.download(v.data(), n * 4);
  } else {
    std::vector<std::uint16_t> b(n);
    d.download(b.data(), n * 2);
    for (std::size_t i = 0; i < n; ++i) v[i] = kernels::bf16_bits_to_f32(b[i]);
  }
  return v;
}

// A view of channels [c0, c0 + c) of a [n, c_total, h, w] tensor, and its element offset.
struct Slice {
  Nchw view;
  std::int64_t offset = 0;
  std::int64_t total = 0;  // elements of the whole parent tensor
};
inline Slice channel_slice(int n, int c_total, int c0, int c, int h, int w) {
  Slice s;
  s.view = Nchw{n, c, h, w, std::int64_t(c_total) * h * w};
  s.offset = std::int64_t(c0) * h * w;
  s.total = std::int64_t(n) * c_total * h * w;
  return s;
}
inline Slice dense(const Nchw& v) {
  return Slice{v, 0, v.count()};
}

// The elements of a view, gathered densely (n, c, h, w order).
inline std::vector<float> gather(const Slice& s, const std::vector<float>& full) {
  std::vector<float> out;
  out.reserve(s.view.count());
  for (int n = 0; n < s.view.n; ++n)
    for (std::int64_t i = 0; i < s.view.image(); ++i)
      out.push_back(full[s.offset + n * s.view.nstride() + i]);
  return out;
}

// Number of elements of the parent outside the view that are not NaN (the poison must survive).
inline std::size_t written_outside(const Slice& s, const std::vector<float>& full) {
  std::vector<char> inside(full.size(), 0);
  for (int n = 0; n < s.view.n; ++n)
    for (std::int64_t i = 0; i < s.view.image(); ++i) inside[s.offset + n * s.view.nstride() + i] = 1;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < full.size(); ++i)
    if (!inside[i] && full[i] == full[i]) ++bad;
  return bad;
}

// ---- channels-last views (kernels/layout.h) -------------------------------------------------
// A Slice whose offset is channels-last: channels [c0, c0 + c) of an NHWC [n, h, w, c_total]
// tensor (pixel stride c_total); its pointer starts at channel c0 of the first pixel.
inline Slice channel_slice_nhwc(int n, int c_total, int c0, int c, int h, int w) {
  Slice s = channel_slice(n, c_total, c0, c, h, w);
  s.offset = channel_slice_offset(c0, h, w, true);
  return s;
}
// The same view `elems` elements further into a longer parent (a base pointer that is not
// 16-byte aligned while the pixel stride still is a multiple of 8 elements).
inline Slice shifted(Slice s, int elems) {
  s.offset += elems;
  s.total += elems;
  return s;
}

// Calls f(parent index, dense NCHW index) for every element of a channels-last view.
template <typename F>
void for_each_nhwc(const Slice& s, F&& f) {
  const Nchw& v = s.view;
  std::int64_t i = 0;
  for (int n = 0; n < v.n; ++n)
    for (int c = 0; c < v.c; ++c)
      for (int h = 0; h < v.h; ++h)
        for (int w = 0; w < v.w; ++w) f(s.offset + nhwc_offset(v, n, c, h, w), i++);
}

// The elements of a channels-last view in dense NCHW order (what the CPU reference reads).
inline std::vector<float> gather_nhwc(const Slice& s, const std::vector<float>& full) {
  std::vector<float> out(s.view.count());
  for_each_nhwc(s, [&](std::int64_t p, std::int64_t i) { out[i] = full[p]; });
  return out;
}
// Dense NCHW values written into the view's channels-last places of `full`.
inline void scatter_nhwc(const Slice& s, const std::vector<float>& nchw, std::vector<float>& full) {
  for_each_nhwc(s, [&](std::int64_t p, std::int64_t i) { full[p] = nchw[i]; });
}
// A parent of NaN holding full's values inside the view only (a kernel reading outside its
// view then gets NaN).
inline std::vector<float> inside_only_nhwc(const Slice& s, const std::vector<float>& full) {
  std::vector<float> out(full.size(), NAN);
  for_each_nhwc(s, [&](std::int64_t p, std::int64_t) { out[p] = full[p]; });
  return out;
}
// Number of parent elements outside the view that differ from `before` (NaN equals NaN):
// with `before` all NaN (poisoned), the elements a launcher wrote outside its view.
inline std::size_t changed_outside_nhwc(const Slice& s, const std::vector<float>& before,
                                        const std::vector<float>& after) {
  std::vector<char> inside(after.size(), 0);
  for_each_nhwc(s, [&](std::int64_t p, std::int64_t) { inside[p] = 1; });
  std::size_t bad = 0;
  for (std::size_t i = 0; i < after.size(); ++i)
    if (!inside[i] && !(before[i] == after[i] || (before[i] != before[i] && after[i] != after[i]))) ++bad;
  return bad;
}

// Inputs of an input-transform check (8 random 256x256 HWC BGR images, random crops and
// mirrors, a random mean image or Caffe's mean values, scale 0.5) on the host and the device,
// and the CPU reference output, NCHW [8, 3, 224, 224].
struct TransformCase {
  static constexpr int kN = 8, kSrc = 256, kCrop = 224;
  kernels::InputTransform t;
  DeviceBuffer src, params, mean;
  std::vector<float> ref;  // NCHW
};
inline TransformCase make_transform_case(bool mean_image) {
  const int n = TransformCase::kN, sh = TransformCase::kSrc, sw = TransformCase::kSrc,
            crop = TransformCase::kCrop;
  std::mt19937 rng(static_cast<unsigned>(fresh_seed("input bytes")));
  std::vector<std::uint8_t> src(std::size_t(n) * sh * sw * 3);
  for (auto& b : src) b = static_cast<std::uint8_t>(rng() & 0xFF);
  std::vector<kernels::CropParams> params(n);
  for (auto& p : params) p = {int(rng() % (sh - crop + 1)), int(rng() % (sw - crop + 1)), int(rng() & 1)};
  const auto mean = testing::random_floats(std::size_t(3) * sh * sw, fresh_seed("mean"), 90.f, 130.f);
  TransformCase c;
  c.t.src_h = sh;
  c.t.src_w = sw;
  c.t.crop = crop;
  c.t.scale = 0.5f;
  c.t.mean_values[0] = 104.f, c.t.mean_values[1] = 117.f, c.t.mean_values[2] = 123.f;
  c.src = DeviceBuffer(src.size());
  c.params = DeviceBuffer(n * sizeof(kernels::CropParams));
  c.mean = DeviceBuffer(mean.size() * 4);
  c.src.upload(src.data(), src.size());
  c.params.upload(params.data(), c.params.bytes());
  c.mean.upload(mean.data(), c.mean.bytes());
  if (mean_image) c.t.mean_image = c.mean.as<float>();
  c.ref.resize(std::size_t(n) * 3 * crop * crop);
  for (int i = 0; i < n; ++i) {
    ref::TransformParams rp;
    rp.crop_h = rp.crop_w = crop;
    rp.y0 = params[i].y0;
    rp.x0 = params[i].x0;
    rp.mirror = params[i].mirror != 0;
    rp.scale = c.t.scale;
    rp.mean_image = mean_image ? mean.data() : nullptr;
    rp.mean_values = c.t.mean_values;
    ref::transform_image(src.data() + std::size_t(i) * sh * sw * 3, ref::PixelLayout::kHwc, 3, sh, sw, rp,
                         c.ref.data() + std::size_t(i) * 3 * crop * crop);
  }
  return c;
}

template <typename T>
constexpr double tol(double fp32_tol, double bf16_tol = 1e-2) {
  return dtype_of<T>() == kernels::DType::kF32 ? fp32_tol : bf16_tol;
}
template <typename T>
constexpr const char* name_of() {
  return kernels::dtype_name(dtype_of<T>());
}

}  // namespace incept::gputest

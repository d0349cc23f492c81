// Channels-last (NHWC) GPU kernels against the NCHW CPU references (kernels/*_ref.h): inputs
// are drawn in NHWC with fresh printed seeds, gathered to NCHW for the reference, and the
// GPU's results (and its MAX-pool mask and LRN scale, stored NHWC) transposed back with
// kernels/layout.h to compare. Views are dense tensors, channel slices of a concat output
// (pixel stride C_total, pointer at +c0) and slices whose base is not 16-byte aligned; channel
// counts cover the 16-byte vector paths (GoogLeNet's multiples of 8) and the scalar ones (3,
// 13, pixel strides that are not a multiple of 8). Outputs are poisoned (0xFF = NaN) so
// unwritten elements fail, inputs are NaN outside their view so stray reads fail, and the
// parent outside each written view must come back unchanged. Tolerances: rel error 1e-6
// (fp32 elementwise), 1e-5 (fp32 reductions), 1e-2 (bf16); masks exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "gpu_test_data.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/conv_few_channels_gpu.h"
#include "kernels/conv_few_fp32_gpu.h"
#include "kernels/conv_ref.h"
#include "kernels/device_facts.h"
#include "kernels/im2col_gpu.h"
#include "kernels/im2col_ref.h"
#include "kernels/input_transform_gpu.h"
#include "kernels/layout.h"
#include "kernels/lrn_gpu.h"
#include "kernels/lrn_ref.h"
#include "kernels/pool_gpu.h"
#include "kernels/pool_ref.h"
#include "kernels/relu_ref.h"
#include "kernels/transform_ref.h"

namespace incept {
namespace {

using namespace gputest;
using testing::random_floats;
using testing::rel_error;
using bf16 = __nv_bfloat16;

// Channels [c0, c0 + c) of a channels-last parent with `total` channels, its base pointer
// `shift` elements further on (shift 1 in bf16: 2-byte aligned).
struct Chans {
  int c = 0, total = 0, c0 = 0, shift = 0;
};
Chans all(int c) {
  return Chans{c, c, 0, 0};
}
Slice nhwc_view(int n, const Chans& ch, int h, int w) {
  return shifted(channel_slice_nhwc(n, ch.total, ch.c0, ch.c, h, w), ch.shift);
}
std::string describe(const Chans& ch) {
  std::string s = std::to_string(ch.c);
  if (ch.total != ch.c) s += "(@" + std::to_string(ch.c0) + " of " + std::to_string(ch.total) + ")";
  if (ch.shift) s += "(base +" + std::to_string(ch.shift) + ")";
  return s;
}

// Values in [-1, 1) with the negative half clamped to 0, as a ReLU output holds (exact zeros).
std::vector<float> relu_output(std::size_t n, std::uint64_t seed) {
  auto v = random_floats(n, seed);
  for (auto& x : v) x = std::max(x, 0.f);
  return v;
}

// Number of differing entries, printing the first one.
std::size_t mismatches(const std::vector<std::int32_t>& got, const std::vector<std::int32_t>& want,
                       const char* what) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (got[i] != want[i] && bad++ == 0)
      std::printf("  %s: first difference at %zu: gpu %d, reference %d\n", what, i, got[i], want[i]);
  return bad + std::max(got.size(), want.size()) - std::min(got.size(), want.size());
}

// ---- bias + ReLU: in place, fused concat copy, backward with the bias gradient --------------

template <typename T>
void check_bias_relu_fwd(int n, const Chans& ch, int h, int w, bool relu, bool bias) {
  const Slice ys = nhwc_view(n, ch, h, w);
  const Nchw d{n, ch.c, h, w};
  const auto y0 = inside_only_nhwc(ys, rounded<T>(random_floats(ys.total, fresh_seed("bias_relu_nhwc y"))));
  const auto b = rounded<T>(random_floats(ch.c, fresh_seed("bias_relu_nhwc b")));
  DeviceBuffer d_y = upload<T>(y0), d_b = upload<T>(b);
  kernels::bias_relu_fwd_nhwc(ys.view, bias ? d_b.as<T>() : nullptr, relu, d_y.as<T>() + ys.offset, nullptr);
  const auto got = download<T>(d_y, ys.total);
  auto ref = gather_nhwc(ys, y0);
  if (bias) ref::bias_add(d, b.data(), ref.data());
  if (relu) ref::relu_fwd(d, ref.data(), ref.data());
  char what[200];
  std::snprintf(what, sizeof what, "bias_relu_fwd_nhwc %s %dx%sx%dx%d%s%s", name_of<T>(), n,
                describe(ch).c_str(), h, w, relu ? "" : " no relu", bias ? "" : " no bias");
  report(what, rel_error(gather_nhwc(ys, got), ref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(ys, y0, got), 0u) << what;
}

// Dense z (a convolution's own output) -> y in its slice of the concat output, then in place.
template <typename T>
void check_bias_relu_copy(int n, const Chans& ch, int h, int w, bool relu) {
  const Slice zs = nhwc_view(n, all(ch.c), h, w), ys = nhwc_view(n, ch, h, w);
  const Nchw d{n, ch.c, h, w};
  const auto z = rounded<T>(random_floats(zs.total, fresh_seed("bias_relu_copy z")));
  const auto b = rounded<T>(random_floats(ch.c, fresh_seed("bias_relu_copy b")));
  DeviceBuffer d_z = upload<T>(z), d_b = upload<T>(b), d_y = poisoned<T>(ys.total);
  kernels::bias_relu_copy_nhwc(zs.view, d_z.as<T>() + zs.offset, d_b.as<T>(), relu, ys.view,
                               d_y.as<T>() + ys.offset, nullptr);
  const auto got = download<T>(d_y, ys.total);
  auto ref = gather_nhwc(zs, z);
  ref::bias_add(d, b.data(), ref.data());
  if (relu) ref::relu_fwd(d, ref.data(), ref.data());
  char what[200];
  std::snprintf(what, sizeof what, "bias_relu_copy_nhwc %s %dx%sx%dx%d%s", name_of<T>(), n,
                describe(ch).c_str(), h, w, relu ? "" : " no relu");
  report(what, rel_error(gather_nhwc(ys, got), ref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(ys, std::vector<float>(ys.total, NAN), got), 0u) << what;
  EXPECT_EQ(download<T>(d_z, zs.total), z) << what << ": the input z was modified";

  // zs == ys, y == z: in place on the slice
  const auto y0 = inside_only_nhwc(ys, rounded<T>(random_floats(ys.total, fresh_seed("bias_relu_copy y"))));
  DeviceBuffer d_yz = upload<T>(y0);
  kernels::bias_relu_copy_nhwc(ys.view, d_yz.as<T>() + ys.offset, d_b.as<T>(), relu, ys.view,
                               d_yz.as<T>() + ys.offset, nullptr);
  const auto got2 = download<T>(d_yz, ys.total);
  auto ref2 = gather_nhwc(ys, y0);
  ref::bias_add(d, b.data(), ref2.data());
  if (relu) ref::relu_fwd(d, ref2.data(), ref2.data());
  std::snprintf(what, sizeof what, "bias_relu_copy_nhwc in place %s %dx%sx%dx%d", name_of<T>(), n,
                describe(ch).c_str(), h, w);
  report(what, rel_error(gather_nhwc(ys, got2), ref2), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(ys, y0, got2), 0u) << what;
}

// y, dy in the concat slice ys; dz into a dense zs; db += onto old values. Then db == nullptr,
// and in place (zs == ys, dz aliasing dy).
template <typename T>
void check_relu_bias_bwd(int n, const Chans& ch, int h, int w, bool relu) {
  const Slice ys = nhwc_view(n, ch, h, w), zs = nhwc_view(n, all(ch.c), h, w);
  const Nchw d{n, ch.c, h, w};
  const auto y = inside_only_nhwc(ys, rounded<T>(relu_output(ys.total, fresh_seed("relu_bias_bwd y"))));
  const auto dy = inside_only_nhwc(ys, rounded<T>(random_floats(ys.total, fresh_seed("relu_bias_bwd dy"))));
  const auto db_old = rounded<T>(random_floats(ch.c, fresh_seed("relu_bias_bwd db")));
  DeviceBuffer d_y = upload<T>(y), d_dy = upload<T>(dy), d_dz = poisoned<T>(zs.total),
               d_db = upload<T>(db_old), d_dz2 = poisoned<T>(zs.total), d_dyz = upload<T>(dy),
               d_db3 = upload<T>(db_old);
  DeviceBuffer d_part(std::max<std::size_t>(kernels::relu_bias_bwd_nhwc_scratch(ys.view), 1) * 4);
  kernels::relu_bias_bwd_nhwc(ys.view, d_y.as<T>() + ys.offset, d_dy.as<T>() + ys.offset, relu, zs.view,
                              d_dz.as<T>() + zs.offset, d_db.as<T>(), d_part.as<float>(), nullptr);
  kernels::relu_bias_bwd_nhwc(ys.view, d_y.as<T>() + ys.offset, d_dy.as<T>() + ys.offset, relu, zs.view,
                              d_dz2.as<T>() + zs.offset, static_cast<T*>(nullptr), d_part.as<float>(),
                              nullptr);
  kernels::relu_bias_bwd_nhwc(ys.view, d_y.as<T>() + ys.offset, d_dyz.as<T>() + ys.offset, relu, ys.view,
                              d_dyz.as<T>() + ys.offset, d_db3.as<T>(), d_part.as<float>(), nullptr);
  const auto dz = download<T>(d_dz, zs.total), dz2 = download<T>(d_dz2, zs.total);
  const auto dyz = download<T>(d_dyz, ys.total);
  const auto db = download<T>(d_db, ch.c), db3 = download<T>(d_db3, ch.c);
  const auto y_n = gather_nhwc(ys, y), dy_n = gather_nhwc(ys, dy);
  std::vector<float> dz_ref = dy_n, db_ref = db_old;
  if (relu) ref::relu_bwd(d, y_n.data(), dy_n.data(), dz_ref.data());
  ref::bias_grad(d, dz_ref.data(), db_ref.data());

  char what[200];
  const std::string shape = std::to_string(n) + "x" + describe(ch) + "x" + std::to_string(h) + "x" +
                            std::to_string(w) + (relu ? "" : " no relu");
  const std::vector<float> poison(zs.total, NAN);
  std::snprintf(what, sizeof what, "relu_bias_bwd_nhwc dz %s %s", name_of<T>(), shape.c_str());
  report(what, rel_error(gather_nhwc(zs, dz), dz_ref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(zs, poison, dz), 0u) << what;
  std::snprintf(what, sizeof what, "relu_bias_bwd_nhwc db (+=) %s", name_of<T>());
  report(what, rel_error(db, db_ref), tol<T>(1e-5));
  std::snprintf(what, sizeof what, "relu_bias_bwd_nhwc dz, db null %s", name_of<T>());
  report(what, rel_error(gather_nhwc(zs, dz2), dz_ref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(zs, poison, dz2), 0u) << what;
  std::snprintf(what, sizeof what, "relu_bias_bwd_nhwc in place dz %s", name_of<T>());
  report(what, rel_error(gather_nhwc(ys, dyz), dz_ref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(ys, dy, dyz), 0u) << what;
  std::snprintf(what, sizeof what, "relu_bias_bwd_nhwc in place db (+=) %s", name_of<T>());
  report(what, rel_error(db3, db_ref), tol<T>(1e-5));
}

template <typename T>
void check_bias_relu(int n, const Chans& ch, int h, int w) {
  check_bias_relu_fwd<T>(n, ch, h, w, true, true);
  check_bias_relu_copy<T>(n, ch, h, w, true);
  check_relu_bias_bwd<T>(n, ch, h, w, true);
}

template <typename T>
void bias_relu_suite() {
  check_bias_relu<T>(8, Chans{128, 256, 64}, 28, 28);  // inception_3a/3x3 in its concat slice
  check_bias_relu<T>(8, Chans{32, 256, 224}, 28, 28);  // inception_3a/pool_proj: the last slice
  check_bias_relu<T>(8, Chans{320, 832, 256}, 7, 7);   // inception_5a/3x3
  check_bias_relu<T>(8, all(192), 56, 56);             // conv2/3x3
  check_bias_relu<T>(16, all(64), 112, 112);           // conv1's plane: many pixels, few channels
  check_bias_relu<T>(40, Chans{64, 96, 16}, 20, 20);   // several pixel chunks, a short last one
  check_bias_relu<T>(4, all(1000), 1, 1);              // FC output (H = W = 1)
  // scalar paths: odd channel counts and offsets, a pixel stride that is not a multiple of 8
  check_bias_relu<T>(2, all(3), 5, 7);
  check_bias_relu<T>(3, Chans{13, 21, 5}, 9, 11);
  check_bias_relu<T>(4, Chans{64, 68, 0}, 14, 14);
  check_bias_relu<T>(4, Chans{64, 68, 4}, 14, 14);
  // multiples of 8 on a base that is not 16-byte aligned (in bf16; fp32 +1 is 4 bytes off)
  check_bias_relu<T>(4, Chans{64, 64, 0, 1}, 14, 14);
  check_bias_relu<T>(4, Chans{64, 72, 4}, 14, 14);
  // flags: ReLU off, bias off
  check_bias_relu_fwd<T>(4, Chans{128, 256, 64}, 14, 14, false, true);
  check_bias_relu_fwd<T>(4, Chans{128, 256, 64}, 14, 14, true, false);
  check_bias_relu_fwd<T>(3, Chans{13, 21, 5}, 9, 11, false, false);
  check_bias_relu_copy<T>(4, Chans{128, 256, 64}, 14, 14, false);
  check_bias_relu_copy<T>(3, Chans{13, 21, 5}, 9, 11, false);
  check_relu_bias_bwd<T>(4, Chans{128, 256, 64}, 14, 14, false);
  check_relu_bias_bwd<T>(3, Chans{13, 21, 5}, 9, 11, false);
}

TEST(GpuNhwc, BiasReluFp32) {
  INCEPT_REQUIRE_GPU();
  bias_relu_suite<float>();
}
TEST(GpuNhwc, BiasReluBf16) {
  INCEPT_REQUIRE_GPU();
  bias_relu_suite<bf16>();
}

// ---- pooling -------------------------------------------------------------------------------

// MAX pooling with relu_mask on a ReLU's output (most values 0, many all-zero windows): the
// same outputs, and an input gradient equal to the plain one where x > 0 and +0 elsewhere.
template <typename T>
void check_pool_relu_mask(const char* label, const Slice& xs, const Slice& ys, const PoolGeom& g,
                          const DeviceBuffer& d_dy) {
  auto x = inside_only_nhwc(xs, rounded<T>(random_floats(xs.total, fresh_seed("pool_nhwc relu x"))));
  for (float& v : x)
    if (!std::isnan(v)) v = std::max(v - 0.6f, 0.f);  // ~80 % zeros
  DeviceBuffer d_x = upload<T>(x), d_y = poisoned<T>(ys.total), d_ym = poisoned<T>(ys.total);
  DeviceBuffer d_mask(ys.view.count()), d_maskm(ys.view.count());
  DeviceBuffer d_dx = poisoned<T>(xs.total), d_dxm = poisoned<T>(xs.total);
  auto* mask = d_mask.as<std::uint8_t>();
  auto* maskm = d_maskm.as<std::uint8_t>();
  const T* dy = d_dy.as<T>() + ys.offset;
  kernels::pool_fwd_nhwc(xs.view, d_x.as<T>() + xs.offset, g, ys.view, d_y.as<T>() + ys.offset, mask,
                         nullptr);
  kernels::pool_fwd_nhwc(xs.view, d_x.as<T>() + xs.offset, g, ys.view, d_ym.as<T>() + ys.offset, maskm,
                         nullptr, true);
  kernels::pool_bwd_nhwc(xs.view, g, ys.view, dy, mask, d_dx.as<T>() + xs.offset, false, nullptr);
  kernels::pool_bwd_nhwc(xs.view, g, ys.view, dy, maskm, d_dxm.as<T>() + xs.offset, false, nullptr);
  const auto y = download<T>(d_y, ys.total), ym = download<T>(d_ym, ys.total);
  const auto dx = download<T>(d_dx, xs.total), dxm = download<T>(d_dxm, xs.total);
  std::size_t wrong_y = 0, wrong = 0, masked = 0;
  for (std::size_t i = 0; i < y.size(); ++i)
    if (!std::isnan(y[i]) && y[i] != ym[i]) ++wrong_y;
  for (std::size_t i = 0; i < dxm.size(); ++i) {
    if (std::isnan(x[i])) continue;  // outside the view
    const float want = x[i] > 0.f ? dx[i] : 0.f;
    masked += x[i] > 0.f || dx[i] == 0.f ? 0 : 1;  // a gradient the mask removed
    if (!(dxm[i] == want && !std::signbit(dxm[i]) == !std::signbit(want))) ++wrong;
  }
  EXPECT_EQ(wrong_y, 0u) << "pool_fwd_nhwc relu_mask " << label << " " << name_of<T>();
  EXPECT_EQ(wrong, 0u) << "pool_bwd_nhwc after relu_mask " << label << " " << name_of<T>();
  EXPECT_GT(masked, 0u) << label << ": no window lost its gradient to the mask";
  EXPECT_EQ(changed_outside_nhwc(xs, std::vector<float>(xs.total, NAN), dxm), 0u) << "relu_mask " << label;
  std::printf("  pool relu_mask %-28s %s: %zu input gradients masked, the rest the same bits\n", label,
              name_of<T>(), masked);
}

template <typename T>
void check_pool(const char* label, int n, const Chans& xc, const Chans& yc, int h, int w, const PoolGeom& g) {
  ASSERT_EQ(xc.c, yc.c);
  const int c = xc.c;
  const Nchw xd{n, c, h, w};
  const Nchw yd = pool_out_shape(xd, g);
  const Slice xs = nhwc_view(n, xc, h, w), ys = nhwc_view(n, yc, yd.h, yd.w);
  const bool is_max = g.method == PoolMethod::kMax;
  const auto x = inside_only_nhwc(xs, rounded<T>(random_floats(xs.total, fresh_seed("pool_nhwc x"))));
  DeviceBuffer d_x = upload<T>(x), d_y = poisoned<T>(ys.total), d_mask(yd.count());
  d_mask.fill_bytes(0xEE);
  kernels::pool_fwd_nhwc(xs.view, d_x.as<T>() + xs.offset, g, ys.view, d_y.as<T>() + ys.offset,
                         is_max ? d_mask.as<std::uint8_t>() : nullptr, nullptr);
  const auto y = download<T>(d_y, ys.total);
  const auto x_n = gather_nhwc(xs, x);
  std::vector<float> yref(yd.count());
  std::vector<std::int32_t> mref(yd.count(), -7), mask(yd.count());
  std::vector<std::uint8_t> mask8(yd.count());
  ref::pool_fwd(xd, x_n.data(), g, yd, yref.data(), is_max ? mref.data() : nullptr);
  char what[240];
  std::snprintf(what, sizeof what, "pool_fwd_nhwc %s %s %dx%sx%dx%d -> %sx%dx%d", label, name_of<T>(), n,
                describe(xc).c_str(), h, w, describe(yc).c_str(), yd.h, yd.w);
  report(what, rel_error(gather_nhwc(ys, y), yref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(ys, std::vector<float>(ys.total, NAN), y), 0u) << what;
  if (is_max) {
    // The GPU stores the argmax as its position in the window; turn the reference's
    // absolute iy * W + ix into that (window origin from the resolved geometry).
    const PoolGeom rg = pool_resolve(xd, g);
    std::vector<std::int32_t> mrel(mref.size());
    for (int i = 0; i < n * c; ++i)
      for (int oy = 0; oy < yd.h; ++oy)
        for (int ox = 0; ox < yd.w; ++ox) {
          const std::size_t o = (std::size_t(i) * yd.h + oy) * yd.w + ox;
          const int iy = mref[o] / w, ix = mref[o] % w;
          mrel[o] = (iy - (oy * rg.stride_h - rg.pad_h)) * rg.kernel_w + (ix - (ox * rg.stride_w - rg.pad_w));
        }
    d_mask.download(mask8.data(), mask8.size());
    for (std::size_t i = 0; i < mask8.size(); ++i) mask[i] = mask8[i];
    EXPECT_EQ(mismatches(mask, nchw_to_nhwc(mrel, n, c, yd.h, yd.w), "mask (NHWC order, in-window)"), 0u)
        << what << ": max-pool argmax differs from the reference (first maximum wins)";
  }

  // backward, overwriting a poisoned dx and accumulating onto a random one (fan-out case)
  const auto dy = inside_only_nhwc(ys, rounded<T>(random_floats(ys.total, fresh_seed("pool_nhwc dy"))));
  const auto dx0 = rounded<T>(random_floats(xs.total, fresh_seed("pool_nhwc dx0")));
  DeviceBuffer d_dy = upload<T>(dy), d_dx = poisoned<T>(xs.total), d_dxa = upload<T>(dx0);
  const std::uint8_t* m = is_max ? d_mask.as<std::uint8_t>() : nullptr;
  kernels::pool_bwd_nhwc(xs.view, g, ys.view, d_dy.as<T>() + ys.offset, m, d_dx.as<T>() + xs.offset, false,
                         nullptr);
  kernels::pool_bwd_nhwc(xs.view, g, ys.view, d_dy.as<T>() + ys.offset, m, d_dxa.as<T>() + xs.offset, true,
                         nullptr);
  const auto dx = download<T>(d_dx, xs.total), dxa = download<T>(d_dxa, xs.total);
  const auto dy_n = gather_nhwc(ys, dy);
  std::vector<float> dxref(xd.count()), dxaref = gather_nhwc(xs, dx0);
  ref::pool_bwd(xd, x_n.data(), g, yd, dy_n.data(), is_max ? mref.data() : nullptr, dxref.data());
  ref::pool_bwd(xd, x_n.data(), g, yd, dy_n.data(), is_max ? mref.data() : nullptr, dxaref.data(), true);
  std::snprintf(what, sizeof what, "pool_bwd_nhwc %s %s %sx%dx%d", label, name_of<T>(), describe(xc).c_str(),
                h, w);
  report(what, rel_error(gather_nhwc(xs, dx), dxref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(xs, std::vector<float>(xs.total, NAN), dx), 0u) << what;
  std::snprintf(what, sizeof what, "pool_bwd_nhwc (+=) %s %s", label, name_of<T>());
  report(what, rel_error(gather_nhwc(xs, dxa), dxaref), tol<T>(1e-6));
  EXPECT_EQ(changed_outside_nhwc(xs, dx0, dxa), 0u) << what;
  if (is_max) check_pool_relu_mask<T>(label, xs, ys, g, d_dy);
}

PoolGeom pool(PoolMethod m, int k, int s, int p = 0, bool global = false) {
  PoolGeom g;
  g.method = m;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = s;
  g.pad_h = g.pad_w = p;
  g.global = global;
  return g;
}

template <typename T>
void pool_suite() {
  const PoolGeom max3s2 = pool(PoolMethod::kMax, 3, 2), max3s1p1 = pool(PoolMethod::kMax, 3, 1, 1);
  check_pool<T>("max 3x3 s2 CEIL", 8, all(64), all(64), 112, 112, max3s2);             // pool1 112->56
  check_pool<T>("max 3x3 s2 CEIL", 8, all(192), all(192), 56, 56, max3s2);             // pool2 56->28
  check_pool<T>("max 3x3 s2 CEIL", 8, all(480), all(480), 28, 28, max3s2);             // pool3 28->14
  check_pool<T>("max 3x3 s2 CEIL", 4, all(832), all(832), 14, 14, max3s2);             // pool4 14->7
  check_pool<T>("max 3x3 s1 p1", 8, all(192), Chans{192, 256, 64}, 28, 28, max3s1p1);  // 3a/pool
  check_pool<T>("max 3x3 s1 p1", 4, Chans{256, 480, 224}, Chans{256, 512, 0}, 14, 14, max3s1p1);
  check_pool<T>("ave 5x5 s3", 8, all(528), all(528), 14, 14, pool(PoolMethod::kAve, 5, 3));  // aux 14->4
  check_pool<T>("ave 7x7 s1", 8, all(1024), Chans{1024, 1040, 8}, 7, 7, pool(PoolMethod::kAve, 7, 1));
  check_pool<T>("ave global", 4, all(1024), all(1024), 7, 7, pool(PoolMethod::kAve, 1, 1, 0, true));
  // CEIL edge windows with padding (the AVE divisor, padding never wins a MAX)
  check_pool<T>("ave 3x3 s2 p1 CEIL edge", 2, all(16), all(16), 10, 13, pool(PoolMethod::kAve, 3, 2, 1));
  check_pool<T>("max 3x3 s2 p1 CEIL edge", 2, Chans{16, 40, 8}, Chans{16, 24, 8}, 10, 13,
                pool(PoolMethod::kMax, 3, 2, 1));
  // scalar paths: odd channel counts and offsets, pixel strides not a multiple of 8
  check_pool<T>("max 3x3 s2 p1 CEIL edge", 2, all(3), all(3), 10, 13, pool(PoolMethod::kMax, 3, 2, 1));
  check_pool<T>("ave 3x3 s2 p1 CEIL edge", 2, all(3), all(3), 10, 13, pool(PoolMethod::kAve, 3, 2, 1));
  check_pool<T>("max 3x3 s1 p1", 3, Chans{13, 21, 5}, Chans{13, 16, 3}, 9, 11, max3s1p1);
  check_pool<T>("ave 5x5 s3", 3, Chans{13, 21, 5}, all(13), 14, 14, pool(PoolMethod::kAve, 5, 3));
  check_pool<T>("max 3x3 s2 CEIL", 4, Chans{64, 68, 4}, Chans{64, 66, 2}, 28, 28, max3s2);
  // multiples of 8 on bases that are not 16-byte aligned (bf16)
  check_pool<T>("max 3x3 s2 CEIL", 4, Chans{64, 64, 0, 1}, Chans{64, 72, 4}, 28, 28, max3s2);
  check_pool<T>("ave 3x3 s2 p1 CEIL edge", 2, Chans{64, 72, 4}, Chans{64, 64, 0, 3}, 10, 13,
                pool(PoolMethod::kAve, 3, 2, 1));
}

TEST(GpuNhwc, PoolingFp32) {
  INCEPT_REQUIRE_GPU();
  pool_suite<float>();
}
TEST(GpuNhwc, PoolingBf16) {
  INCEPT_REQUIRE_GPU();
  pool_suite<bf16>();
}

// ---- LRN -----------------------------------------------------------------------------------

template <typename T>
void check_lrn(int n, const Chans& xc, const Chans& yc, int h, int w, bool store_scale) {
  ASSERT_EQ(xc.c, yc.c);
  const LrnGeom g;  // 5, 1e-4, 0.75, 1
  const int c = xc.c;
  const Nchw d{n, c, h, w};
  const Slice xs = nhwc_view(n, xc, h, w), ys = nhwc_view(n, yc, h, w);
  // Inputs of conv-output magnitude so the scale term matters (alpha/size * sum x^2 ~ 0.1).
  const auto x =
      inside_only_nhwc(xs, rounded<T>(random_floats(xs.total, fresh_seed("lrn_nhwc x"), -40.f, 40.f)));
  DeviceBuffer d_x = upload<T>(x), d_y = poisoned<T>(ys.total), d_scale(d.count() * 4);
  d_scale.fill_bytes(0xFF);
  kernels::lrn_fwd_nhwc(xs.view, d_x.as<T>() + xs.offset, g, ys.view, d_y.as<T>() + ys.offset,
                        store_scale ? d_scale.as<float>() : nullptr, nullptr);
  const auto y = download<T>(d_y, ys.total);
  const auto x_n = gather_nhwc(xs, x);
  std::vector<float> yref(d.count()), sref(d.count());
  ref::lrn_fwd(d, x_n.data(), g, d, yref.data(), sref.data());
  char what[240];
  const std::string shape = std::to_string(n) + "x" + describe(xc) + "x" + std::to_string(h) + "x" +
                            std::to_string(w) + " -> " + describe(yc);
  std::snprintf(what, sizeof what, "lrn_fwd_nhwc %s %s", name_of<T>(), shape.c_str());
  report(what, rel_error(gather_nhwc(ys, y), yref), tol<T>(1e-5));
  EXPECT_EQ(changed_outside_nhwc(ys, std::vector<float>(ys.total, NAN), y), 0u) << what;
  if (store_scale) {
    std::vector<float> s(d.count());
    d_scale.download(s.data(), s.size() * 4);
    report("lrn_fwd_nhwc scale (fp32, NHWC order)", rel_error(s, nchw_to_nhwc(sref, n, c, h, w)), 1e-5);
  }

  // backward (reference fed the reference y and scale, the GPU its own scale), overwriting a
  // poisoned dx and accumulating onto a random one
  const auto yr = rounded<T>(yref);
  std::vector<float> y_in(ys.total, NAN);
  scatter_nhwc(ys, yr, y_in);
  const auto dy = inside_only_nhwc(ys, rounded<T>(random_floats(ys.total, fresh_seed("lrn_nhwc dy"))));
  const auto dx0 = rounded<T>(random_floats(xs.total, fresh_seed("lrn_nhwc dx0")));
  DeviceBuffer d_yr = upload<T>(y_in), d_dy = upload<T>(dy), d_dx = poisoned<T>(xs.total),
               d_dxa = upload<T>(dx0);
  const float* s = store_scale ? d_scale.as<float>() : nullptr;
  kernels::lrn_bwd_nhwc(xs.view, d_x.as<T>() + xs.offset, ys.view, d_yr.as<T>() + ys.offset,
                        d_dy.as<T>() + ys.offset, s, g, d_dx.as<T>() + xs.offset, false, nullptr);
  kernels::lrn_bwd_nhwc(xs.view, d_x.as<T>() + xs.offset, ys.view, d_yr.as<T>() + ys.offset,
                        d_dy.as<T>() + ys.offset, s, g, d_dxa.as<T>() + xs.offset, true, nullptr);
  const auto dx = download<T>(d_dx, xs.total), dxa = download<T>(d_dxa, xs.total);
  const auto dy_n = gather_nhwc(ys, dy);
  std::vector<float> dxref(d.count()), dxaref = gather_nhwc(xs, dx0);
  ref::lrn_bwd(d, x_n.data(), d, yr.data(), dy_n.data(), sref.data(), g, dxref.data());
  ref::lrn_bwd(d, x_n.data(), d, yr.data(), dy_n.data(), sref.data(), g, dxaref.data(), true);
  std::snprintf(what, sizeof what, "lrn_bwd_nhwc %s %s scale %s", name_of<T>(), shape.c_str(),
                store_scale ? "stored" : "recomputed");
  report(what, rel_error(gather_nhwc(xs, dx), dxref), tol<T>(1e-5));
  EXPECT_EQ(changed_outside_nhwc(xs, std::vector<float>(xs.total, NAN), dx), 0u) << what;
  std::snprintf(what, sizeof what, "lrn_bwd_nhwc (+=) %s", name_of<T>());
  report(what, rel_error(gather_nhwc(xs, dxa), dxaref), tol<T>(1e-5));
  EXPECT_EQ(changed_outside_nhwc(xs, dx0, dxa), 0u) << what;

  // relu_mask (x the output of a ReLU read only by this LRN): the same bits where x > 0, +0
  // elsewhere; an accumulating call with it is refused
  DeviceBuffer d_dxm = poisoned<T>(xs.total);
  kernels::lrn_bwd_nhwc(xs.view, d_x.as<T>() + xs.offset, ys.view, d_yr.as<T>() + ys.offset,
                        d_dy.as<T>() + ys.offset, s, g, d_dxm.as<T>() + xs.offset, false, nullptr, true);
  const auto dxm = download<T>(d_dxm, xs.total);
  std::size_t wrong = 0, masked = 0;
  for (std::size_t i = 0; i < dxm.size(); ++i) {
    if (std::isnan(x[i])) continue;  // outside the view (inside_only_nhwc)
    const float want = x[i] > 0.f ? dx[i] : 0.f;
    masked += x[i] > 0.f ? 0 : 1;
    if (!(dxm[i] == want && !std::signbit(dxm[i]) == !std::signbit(want))) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "lrn_bwd_nhwc relu_mask " << name_of<T>() << " " << shape;
  EXPECT_GT(masked, 0u);
  EXPECT_EQ(changed_outside_nhwc(xs, std::vector<float>(xs.total, NAN), dxm), 0u) << "relu_mask";
  EXPECT_THROW(
      kernels::lrn_bwd_nhwc(xs.view, d_x.as<T>() + xs.offset, ys.view, d_yr.as<T>() + ys.offset,
                            d_dy.as<T>() + ys.offset, s, g, d_dxm.as<T>() + xs.offset, true, nullptr, true),
      Error);
}

template <typename T>
void lrn_suite() {
  check_lrn<T>(8, all(64), all(64), 56, 56, true);                // pool1/norm1
  check_lrn<T>(8, all(64), all(64), 56, 56, false);               //   scale recomputed
  check_lrn<T>(4, all(192), Chans{192, 256, 64}, 56, 56, false);  // conv2/norm2, y in a slice
  check_lrn<T>(4, Chans{192, 256, 32}, all(192), 56, 56, true);   //   x in a slice
  // scalar paths and fewer channels than the window or a chunk
  check_lrn<T>(3, all(7), all(7), 5, 9, false);
  check_lrn<T>(3, all(3), all(3), 6, 5, true);
  check_lrn<T>(3, Chans{13, 21, 5}, Chans{13, 16, 3}, 9, 11, true);
  check_lrn<T>(3, Chans{13, 21, 5}, Chans{13, 16, 3}, 9, 11, false);
  // multiples of 8 on bases that are not 16-byte aligned (bf16)
  check_lrn<T>(2, Chans{64, 64, 0, 1}, Chans{64, 72, 4}, 14, 14, true);
  check_lrn<T>(2, Chans{64, 72, 4}, Chans{64, 64, 0, 1}, 14, 14, false);
}

TEST(GpuNhwc, LrnFp32) {
  INCEPT_REQUIRE_GPU();
  lrn_suite<float>();
}
TEST(GpuNhwc, LrnBf16) {
  INCEPT_REQUIRE_GPU();
  lrn_suite<bf16>();
}

// ---- input transform, channels-last (kernels/transform_ref.h on HWC BGR bytes) -------------

template <typename T>
void check_input_transform(bool mean_image, int pixel_stride) {
  TransformCase c = make_transform_case(mean_image);
  c.t.channels_last = true;
  const int n = TransformCase::kN, crop = TransformCase::kCrop;
  // pixel stride 3: dense NHWC; 4: channels 0..2 of a 4-channel tensor (channel 3 untouched)
  const Slice ys = channel_slice_nhwc(n, pixel_stride, 0, 3, crop, crop);
  DeviceBuffer d_y = poisoned<T>(ys.total);
  kernels::input_transform_fwd(c.t, c.src.as<std::uint8_t>(), c.params.as<kernels::CropParams>(), ys.view,
                               d_y.as<T>() + ys.offset, nullptr);
  const auto y = download<T>(d_y, ys.total);
  char what[160];
  std::snprintf(what, sizeof what,
                "input_transform channels_last %s crop 224 mirror, mean %s, pixel stride %d", name_of<T>(),
                mean_image ? "image" : "values", pixel_stride);
  report(what, rel_error(gather_nhwc(ys, y), c.ref), tol<T>(1e-7));
  EXPECT_EQ(changed_outside_nhwc(ys, std::vector<float>(ys.total, NAN), y), 0u) << what;
}

TEST(GpuNhwc, InputTransform) {
  INCEPT_REQUIRE_GPU();
  check_input_transform<float>(true, 3);
  check_input_transform<float>(false, 3);
  check_input_transform<bf16>(true, 3);
  check_input_transform<float>(false, 4);
  check_input_transform<bf16>(true, 4);
}

// ---- im2col (conv1 as a GEMM) --------------------------------------------------------------

template <typename T>
void check_im2col(int n, const Chans& xc, int h, int w, int r, int stride, int pad) {
  std::vector<float> dx_prev;
  ConvGeom g;
  g.num_output = 6, g.kernel_h = g.kernel_w = r, g.stride_h = g.stride_w = stride, g.pad_h = g.pad_w = pad;
  const Slice xsl = nhwc_view(n, xc, h, w);
  const Nchw& xs = xsl.view;
  const auto x = rounded<T>(testing::random_floats(std::size_t(xsl.total), fresh_seed("im2col x")));
  const int ho = conv_out_dim(h, r, stride, pad), wo = conv_out_dim(w, r, stride, pad);
  const int kc = r * r * xc.c, ld = (kc + 7) / 8 * 8, rows = n * ho * wo;
  DeviceBuffer dx = upload<T>(x), dcols = poisoned<T>(std::size_t(rows) * ld);
  kernels::im2col_nhwc<T>(xs, dx.as<T>() + xsl.offset, g, ld, dcols.as<T>(), nullptr);
  const auto got = download<T>(dcols, std::size_t(rows) * ld);
  std::vector<float> want(got.size());
  ref::im2col_nhwc(xs, x.data() + xsl.offset, g, ld, want.data());
  char what[160];
  std::snprintf(what, sizeof what, "im2col_nhwc %s %dx%sx%dx%d k%d s%d p%d", name_of<T>(), n,
                describe(xc).c_str(), h, w, r, stride, pad);
  report(what, rel_error(got, want), tol<T>(1e-7, 1e-7));  // a copy: exact

  // filters padded to ld, and the padded gradient added back
  const auto wt = rounded<T>(testing::random_floats(std::size_t(g.num_output) * kc, fresh_seed("im2col w")));
  DeviceBuffer dw = upload<T>(wt), dwp = poisoned<T>(std::size_t(g.num_output) * ld);
  kernels::pad_rows<T>(g.num_output, kc, ld, dw.as<T>(), dwp.as<T>(), nullptr);
  const auto wp = download<T>(dwp, std::size_t(g.num_output) * ld);
  std::vector<float> wp_ref(wp.size());
  ref::pad_rows(g.num_output, kc, ld, wt.data(), wp_ref.data());
  report(std::string("pad_rows ") + name_of<T>(), rel_error(wp, wp_ref), tol<T>(1e-7, 1e-7));
  const auto g0 = rounded<T>(testing::random_floats(wt.size(), fresh_seed("im2col dw")));
  DeviceBuffer dg = upload<T>(g0);
  kernels::unpad_add_rows<T>(g.num_output, ld, kc, dwp.as<T>(), dg.as<T>(), nullptr);
  const auto gg = download<T>(dg, wt.size());
  std::vector<float> gg_ref = g0;
  ref::unpad_add_rows(g.num_output, ld, kc, wp_ref.data(), gg_ref.data());
  report(std::string("unpad_add_rows ") + name_of<T>(), rel_error(gg, gg_ref), tol<T>(1e-6));

  // col2im (the data gradient of the GEMM path): overwrite into poison, then accumulate
  if (ld != kc) return;  // the GEMM path uses col2im only with unpadded rows
  const auto dc = rounded<T>(testing::random_floats(std::size_t(rows) * ld, fresh_seed("col2im cols")));
  DeviceBuffer d_dc = upload<T>(dc), d_dx = poisoned<T>(std::size_t(xsl.total));
  for (bool acc : {false, true}) {
    kernels::col2im_nhwc<T>(xs, d_dc.as<T>(), g, ld, d_dx.as<T>() + xsl.offset, acc, nullptr);
    const auto dxg = download<T>(d_dx, std::size_t(xsl.total));
    std::vector<float> dx_ref = acc ? dx_prev : std::vector<float>(std::size_t(xsl.total), NAN);
    ref::col2im_nhwc(xs, dc.data(), g, ld, dx_ref.data() + xsl.offset, acc);
    std::snprintf(what, sizeof what, "col2im_nhwc%s %s %dx%sx%dx%d k%d s%d p%d", acc ? " (+=)" : "",
                  name_of<T>(), n, describe(xc).c_str(), h, w, r, stride, pad);
    report(what, rel_error(gather_nhwc(xsl, dxg), gather_nhwc(xsl, dx_ref)), tol<T>(1e-6));
    dx_prev = rounded<T>(dxg);
  }
}

TEST(GpuNhwc, Im2col) {
  INCEPT_REQUIRE_GPU();
  check_im2col<float>(2, all(3), 224, 224, 7, 2, 3);  // conv1
  check_im2col<bf16>(2, all(3), 224, 224, 7, 2, 3);
  check_im2col<float>(3, all(1), 28, 28, 5, 1, 0);              // LeNet conv1
  check_im2col<float>(2, Chans{5, 13, 4, 0}, 17, 19, 3, 2, 1);  // a channel slice, odd sizes
  check_im2col<bf16>(2, Chans{5, 13, 4, 0}, 17, 19, 3, 2, 1);
  check_im2col<float>(2, all(16), 14, 14, 3, 1, 1);  // inception 3x3 / 5x5 shapes, vector paths
  check_im2col<bf16>(2, Chans{32, 96, 64, 0}, 14, 14, 5, 1, 2);
  check_im2col<float>(2, all(8), 9, 11, 3, 2, 1);  // stride 2: taps that no output reads
}

// ---- conv1 as an implicit GEMM (bf16 tensor cores) ------------------------------------------

// KRSC (channels-last filters) <-> KCRS (the reference's).
std::vector<float> krsc_to_kcrs(const std::vector<float>& w, int k, int c, int r, int s) {
  std::vector<float> o(w.size());
  for (int n = 0; n < k; ++n)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < r; ++i)
        for (int j = 0; j < s; ++j)
          o[((std::size_t(n) * c + ch) * r + i) * s + j] = w[((std::size_t(n) * r + i) * s + j) * c + ch];
  return o;
}

// The output gradient dy of view ysl through the ReLU mask of its output y (relu), in NCHW.
std::vector<float> masked_grad(const Slice& ysl, const std::vector<float>& dy, const std::vector<float>& y,
                               bool relu) {
  auto dz = gather_nhwc(ysl, dy);
  if (relu) {
    const auto yv = gather_nhwc(ysl, y);
    for (std::size_t i = 0; i < dz.size(); ++i) dz[i] = yv[i] > 0.f ? dz[i] : 0.f;
  }
  return dz;
}

// Forward (bias, ReLU) and the weight gradient (through the ReLU mask, added to a gradient
// that already holds values) against Caffe's NCHW convolution. Both round once: RMS error
// about 1.6e-3, limit 4e-3 (a result 1 % off fails).
void check_conv_few(int n, const Chans& xc, int h, int w, int r, int stride, int pad, const Chans& yc,
                    bool bias, bool relu) {
  ConvGeom g;
  g.num_output = yc.c, g.kernel_h = g.kernel_w = r, g.stride_h = g.stride_w = stride, g.pad_h = g.pad_w = pad;
  g.bias = bias;
  const int ho = conv_out_dim(h, r, stride, pad), wo = conv_out_dim(w, r, stride, pad);
  const Slice xsl = nhwc_view(n, xc, h, w), ysl = nhwc_view(n, yc, ho, wo);
  const Nchw &xs = xsl.view, &ys = ysl.view;
  char what[200];
  std::snprintf(what, sizeof what, "conv_few_channels %dx%sx%dx%d k%d s%d p%d -> %s%s%s", n,
                describe(xc).c_str(), h, w, r, stride, pad, describe(yc).c_str(), bias ? " +bias" : "",
                relu ? " +relu" : "");
  ASSERT_TRUE(kernels::conv_few_channels_supported(xs, g, ys)) << what;
  const int taps = r * r * xc.c;
  const auto x =
      inside_only_nhwc(xsl, rounded<bf16>(random_floats(std::size_t(xsl.total), fresh_seed("conv x"))));
  const auto wk = rounded<bf16>(random_floats(std::size_t(g.num_output) * taps, fresh_seed("conv w")));
  const auto b = rounded<bf16>(random_floats(std::size_t(g.num_output), fresh_seed("conv b")));
  DeviceBuffer dx = upload<bf16>(x), dwt = upload<bf16>(wk), db = upload<bf16>(b);
  DeviceBuffer dy = poisoned<bf16>(std::size_t(ysl.total));
  kernels::conv_few_channels_fwd(xs, dx.as<bf16>() + xsl.offset, g, dwt.as<bf16>(),
                                 bias ? db.as<bf16>() : nullptr, relu, ys, dy.as<bf16>() + ysl.offset,
                                 nullptr);
  const auto yg = download<bf16>(dy, std::size_t(ysl.total));

  const Nchw xd{n, xc.c, h, w}, yd{n, yc.c, ho, wo};
  const auto x_nchw = gather_nhwc(xsl, x);
  const auto w_kcrs = krsc_to_kcrs(wk, g.num_output, xc.c, r, r);
  std::vector<float> col(std::size_t(ref::conv_col_elems(xd, g))), want(yd.count());
  ref::conv_fwd(xd, x_nchw.data(), g, w_kcrs.data(), bias ? b.data() : nullptr, yd, want.data(), col.data());
  if (relu)
    for (auto& v : want) v = std::max(v, 0.f);
  report(std::string(what) + " forward", rel_error(gather_nhwc(ysl, yg), want), 4e-3);
  EXPECT_EQ(changed_outside_nhwc(ysl, std::vector<float>(yg.size(), NAN), yg), 0u) << what;

  // weight gradient through the GPU's own output (its ReLU mask), added to random gradients
  const auto y_in = inside_only_nhwc(ysl, yg);
  auto g_full =
      inside_only_nhwc(ysl, rounded<bf16>(random_floats(std::size_t(ysl.total), fresh_seed("conv dy"))));
  const auto dw0 = rounded<bf16>(random_floats(wk.size(), fresh_seed("conv dw0")));
  const auto db0 = rounded<bf16>(random_floats(b.size(), fresh_seed("conv db0")));
  DeviceBuffer d_y = upload<bf16>(y_in), d_g = upload<bf16>(g_full), d_dw = upload<bf16>(dw0),
               d_db = upload<bf16>(db0);
  DeviceBuffer partial(kernels::conv_few_channels_wgrad_scratch(xs, g, ys) * sizeof(float));
  partial.fill_bytes(0xFF);  // every partial sum the reduction reads must have been written
  kernels::conv_few_channels_bwd_filter(xs, dx.as<bf16>() + xsl.offset, g, ys, d_y.as<bf16>() + ysl.offset,
                                        d_g.as<bf16>() + ysl.offset, relu, d_dw.as<bf16>(),
                                        bias ? d_db.as<bf16>() : nullptr, partial.as<float>(), nullptr);
  const auto dwg = download<bf16>(d_dw, wk.size()), dbg = download<bf16>(d_db, b.size());
  const auto dz = masked_grad(ysl, g_full, y_in, relu);
  auto dw_ref = krsc_to_kcrs(dw0, g.num_output, xc.c, r, r);
  auto db_ref = db0;
  ref::conv_bwd_filter(xd, x_nchw.data(), yd, dz.data(), g, dw_ref.data(), bias ? db_ref.data() : nullptr,
                       col.data());
  report(std::string(what) + " dw (+=)", rel_error(krsc_to_kcrs(dwg, g.num_output, xc.c, r, r), dw_ref),
         4e-3);
  if (bias)
    report(std::string(what) + " db (+=)", rel_error(dbg, db_ref), 4e-3);
  else
    EXPECT_EQ(rel_error(dbg, db0), 0.0) << what << ": db changed without a bias";
}

TEST(GpuNhwc, ConvFewChannels) {
  INCEPT_REQUIRE_GPU();
  if (kernels::compute_capability() < 80) {
    std::printf("  compute capability %d: no bf16 tensor cores, the kernels refuse it\n",
                kernels::compute_capability());
    ConvGeom g;
    g.num_output = 64, g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = 3;
    EXPECT_FALSE(kernels::conv_few_channels_supported(Nchw{2, 3, 224, 224}, g, Nchw{2, 64, 112, 112}));
    return;
  }
  check_conv_few(2, all(3), 224, 224, 7, 2, 3, all(64), true, true);            // GoogLeNet's conv1
  check_conv_few(3, all(3), 37, 41, 7, 2, 3, all(64), true, false);             // a partial last tile
  check_conv_few(2, all(3), 23, 19, 5, 2, 2, Chans{32, 48, 8, 0}, true, true);  // an output slice
  // more of the quad path (even stride, C <= 4): 1 channel and one k16 step per window row, a
  // partial second block of channels and column tiles past the end; 6 rows of 6 taps
  check_conv_few(2, all(1), 30, 70, 3, 2, 1, all(80), true, true);
  check_conv_few(1, all(3), 20, 140, 6, 2, 3, all(32), false, true);
  check_conv_few(2, all(2), 9, 13, 4, 2, 0, all(16), true, false);
  // the general path (odd strides): a second block of 16 channels, 3 row segments; 24 and 16
  // taps per filter row, 8 rows
  check_conv_few(2, all(2), 28, 150, 5, 1, 0, all(80), true, true);
  check_conv_few(2, all(4), 9, 11, 6, 1, 2, all(48), true, true);
  check_conv_few(1, all(2), 12, 10, 8, 1, 3, all(16), true, true);
  check_conv_few(1, all(4), 17, 15, 3, 1, 1, all(16), false, false);  // no bias, no ReLU
  // what the kernels refuse: more taps per filter row than fit (AlexNet's 11x11x3), an odd
  // stride * channels (LeNet: 1 channel, stride 1), channels not a multiple of 16, an output
  // pixel stride that breaks 16-byte stores, an input that is a channel slice
  ConvGeom g;
  g.num_output = 64, g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = 3;
  EXPECT_FALSE(kernels::conv_few_channels_supported(Nchw{1, 3, 24, 24, 5 * 24 * 24}, g, Nchw{1, 64, 12, 12}));
  g.num_output = 64, g.kernel_h = g.kernel_w = 11, g.stride_h = g.stride_w = 4;
  EXPECT_FALSE(kernels::conv_few_channels_supported(Nchw{1, 3, 227, 227}, g, Nchw{1, 64, 55, 55}));
  g.num_output = 32, g.kernel_h = g.kernel_w = 5, g.stride_h = g.stride_w = 1;
  EXPECT_FALSE(kernels::conv_few_channels_supported(Nchw{1, 1, 28, 28}, g, Nchw{1, 32, 24, 24}));
  g.num_output = 20;
  EXPECT_FALSE(kernels::conv_few_channels_supported(Nchw{1, 2, 28, 28}, g, Nchw{1, 20, 24, 24}));
  g.num_output = 16;
  EXPECT_FALSE(
      kernels::conv_few_channels_supported(Nchw{1, 2, 28, 28}, g, Nchw{1, 16, 24, 24, 20 * 24 * 24}));
}

// ---- conv1 as a direct fp32 convolution (FMA arithmetic) --------------------------------------

// Relative L2 error of got against a double reference.
double rel_error_d(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Forward (bias, ReLU) and the weight and bias gradients (through the ReLU mask of the GPU's own
// output, added to gradients that already hold values) against Caffe's convolution in double.
// The limit: 3x the error of the same convolution done by the CPU reference in float (its
// im2col GEMM), and at most 2e-6, so one wrong tap or channel (errors of 1e-2 and up) fails.
void check_conv_few_fp32(int n, int h, int w, int pad, const Chans& yc, bool bias, bool relu) {
  ConvGeom g;
  g.num_output = yc.c, g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = pad;
  g.bias = bias;
  const int ho = conv_out_dim(h, 7, 2, pad), wo = conv_out_dim(w, 7, 2, pad);
  const Slice xsl = nhwc_view(n, all(3), h, w), ysl = nhwc_view(n, yc, ho, wo);
  const Nchw &xs = xsl.view, &ys = ysl.view;
  char what[200];
  std::snprintf(what, sizeof what, "conv_few_fp32 %dx3x%dx%d k7 s2 p%d -> %s%s%s", n, h, w, pad,
                describe(yc).c_str(), bias ? " +bias" : "", relu ? " +relu" : "");
  ASSERT_TRUE(kernels::conv_few_fp32_supported(xs, g, ys)) << what;
  const int taps = 7 * 7 * 3;
  const auto x = inside_only_nhwc(xsl, random_floats(std::size_t(xsl.total), fresh_seed("conv x")));
  const auto wk = random_floats(std::size_t(g.num_output) * taps, fresh_seed("conv w"));
  const auto b = random_floats(std::size_t(g.num_output), fresh_seed("conv b"));
  DeviceBuffer dx = upload<float>(x), dwt = upload<float>(wk), db = upload<float>(b);
  DeviceBuffer dy = poisoned<float>(std::size_t(ysl.total));
  kernels::conv_few_fp32_fwd(xs, dx.as<float>() + xsl.offset, g, dwt.as<float>(),
                             bias ? db.as<float>() : nullptr, relu, ys, dy.as<float>() + ysl.offset, nullptr);
  const auto yg = download<float>(dy, std::size_t(ysl.total));

  const Nchw xd{n, 3, h, w}, yd{n, yc.c, ho, wo};
  const auto x_nchw = gather_nhwc(xsl, x);
  const auto w_kcrs = krsc_to_kcrs(wk, g.num_output, 3, 7, 7);
  std::vector<double> col(std::size_t(ref::conv_col_elems(xd, g))), want(yd.count());
  const auto xdd = to_double(x_nchw), wdd = to_double(w_kcrs), bdd = to_double(b);
  ref::conv_fwd(xd, xdd.data(), g, wdd.data(), bias ? bdd.data() : nullptr, yd, want.data(), col.data());
  std::vector<float> colf(col.size()), wantf(want.size());  // the float CPU reference, for the limit
  ref::conv_fwd(xd, x_nchw.data(), g, w_kcrs.data(), bias ? b.data() : nullptr, yd, wantf.data(),
                colf.data());
  if (relu) {
    for (auto& v : want) v = std::max(v, 0.0);
    for (auto& v : wantf) v = std::max(v, 0.f);
  }
  const double limit_fwd = std::min(2e-6, std::max(3 * rel_error_d(wantf, want), 1e-7));
  report(std::string(what) + " forward", rel_error_d(gather_nhwc(ysl, yg), want), limit_fwd);
  EXPECT_EQ(changed_outside_nhwc(ysl, std::vector<float>(yg.size(), NAN), yg), 0u) << what;

  // weight gradient through the GPU's own output (its ReLU mask), added to random gradients
  const auto y_in = inside_only_nhwc(ysl, yg);
  const auto g_full = inside_only_nhwc(ysl, random_floats(std::size_t(ysl.total), fresh_seed("conv dy")));
  const auto dw0 = random_floats(wk.size(), fresh_seed("conv dw0"));
  const auto db0 = random_floats(b.size(), fresh_seed("conv db0"));
  DeviceBuffer d_y = upload<float>(y_in), d_g = upload<float>(g_full), d_dw = upload<float>(dw0),
               d_db = upload<float>(db0);
  DeviceBuffer partial(kernels::conv_few_fp32_wgrad_scratch(xs, g, ys) * sizeof(float));
  partial.fill_bytes(0xFF);  // every partial sum the reduction reads must have been written
  kernels::conv_few_fp32_bwd_filter(xs, dx.as<float>() + xsl.offset, g, ys, d_y.as<float>() + ysl.offset,
                                    d_g.as<float>() + ysl.offset, relu, d_dw.as<float>(),
                                    bias ? d_db.as<float>() : nullptr, partial.as<float>(), nullptr);
  const auto dwg = download<float>(d_dw, wk.size()), dbg = download<float>(d_db, b.size());
  const auto dz = masked_grad(ysl, g_full, y_in, relu);
  const auto dw0_kcrs = krsc_to_kcrs(dw0, g.num_output, 3, 7, 7);
  auto dw_ref = to_double(dw0_kcrs), db_ref = to_double(db0);
  const auto dzd = to_double(dz);
  ref::conv_bwd_filter(xd, xdd.data(), yd, dzd.data(), g, dw_ref.data(), bias ? db_ref.data() : nullptr,
                       col.data());
  auto dw_f = dw0_kcrs, db_f = db0;
  ref::conv_bwd_filter(xd, x_nchw.data(), yd, dz.data(), g, dw_f.data(), bias ? db_f.data() : nullptr,
                       colf.data());
  const double limit_dw = std::min(2e-6, std::max(3 * rel_error_d(dw_f, dw_ref), 1e-7));
  report(std::string(what) + " dw (+=)", rel_error_d(krsc_to_kcrs(dwg, g.num_output, 3, 7, 7), dw_ref),
         limit_dw);
  if (bias) {
    const double limit_db = std::min(2e-6, std::max(3 * rel_error_d(db_f, db_ref), 1e-7));
    report(std::string(what) + " db (+=)", rel_error_d(dbg, db_ref), limit_db);
  } else {
    EXPECT_EQ(rel_error(dbg, db0), 0.0) << what << ": db changed without a bias";
  }
}

TEST(GpuNhwc, ConvFewFp32) {
  INCEPT_REQUIRE_GPU();
  // GoogLeNet's conv1 (forward tiles of 2 rows, weight-gradient tiles of 1), with enough images
  // that every block runs several tiles through both of its buffers
  const int images = std::max(2, (4 * kernels::sm_count() + 55) / 56);
  check_conv_few_fp32(images, 224, 224, 3, all(64), true, true);
  check_conv_few_fp32(images, 224, 224, 3, all(64), false, false);
  check_conv_few_fp32(3, 37, 41, 3, all(128), true, false);             // 4 rows a tile, the last partial
  check_conv_few_fp32(2, 23, 19, 2, Chans{64, 96, 16, 0}, true, true);  // an output slice, 4 + 4 + 3 rows
  check_conv_few_fp32(1, 60, 224, 1, all(64), false, true);             // no bias, other padding
  check_conv_few_fp32(2, 9, 9, 0, all(64), true, true);                 // 2x2 outputs, no padding
  // what the kernels refuse: other taps or strides, channels not a multiple of 64, more than
  // 112 output columns, an input that is a channel slice, an output pixel stride that breaks
  // 16-byte stores
  ConvGeom g;
  g.num_output = 64, g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = 3;
  EXPECT_TRUE(kernels::conv_few_fp32_supported(Nchw{2, 3, 224, 224}, g, Nchw{2, 64, 112, 112}));
  EXPECT_FALSE(kernels::conv_few_fp32_supported(Nchw{2, 3, 232, 232}, g, Nchw{2, 64, 116, 116}));
  EXPECT_FALSE(kernels::conv_few_fp32_supported(Nchw{1, 3, 24, 24, 5 * 24 * 24}, g, Nchw{1, 64, 12, 12}));
  EXPECT_FALSE(kernels::conv_few_fp32_supported(Nchw{1, 3, 24, 24}, g, Nchw{1, 64, 12, 12, 66 * 12 * 12}));
  g.num_output = 48;
  EXPECT_FALSE(kernels::conv_few_fp32_supported(Nchw{1, 3, 24, 24}, g, Nchw{1, 48, 12, 12}));
  g.num_output = 64, g.kernel_h = g.kernel_w = 5;
  EXPECT_FALSE(kernels::conv_few_fp32_supported(Nchw{1, 3, 24, 24}, g, Nchw{1, 64, 12, 12}));
  g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 1;
  EXPECT_FALSE(kernels::conv_few_fp32_supported(Nchw{1, 3, 24, 24}, g, Nchw{1, 64, 24, 24}));
}

}  // namespace
}  // namespace incept

// GPU kernels against their CPU references (kernels/*_ref.h) on random inputs with fresh
// printed seeds, at GoogLeNet's real shapes, in fp32 and bf16, with outputs poisoned (0xFF =
// NaN) so unwritten elements fail, and with channel-slice views (n_stride > C*H*W) where a
// layer writes into its slice of a concat output. Tolerances: rel error 1e-5 (fp32),
// 1e-2 (bf16); masks and dropout bit-exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "engine/check.h"
#include "engine/gpu_fc.h"
#include "engine/graph_rewrite.h"
#include "gpu_test_data.h"
#include "kernels/bias_relu_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/dropout_gpu.h"
#include "kernels/gemm_tf32x3_gpu.h"
#include "kernels/im2col_gpu.h"
#include "kernels/im2col_ref.h"
#include "kernels/input_transform_gpu.h"
#include "kernels/lrn_gpu.h"
#include "kernels/lrn_ref.h"
#include "kernels/pool_gpu.h"
#include "kernels/pool_ref.h"
#include "kernels/relu_ref.h"
#include "kernels/sgd_gpu.h"
#include "kernels/sgd_ref.h"
#include "kernels/softmax_loss_gpu.h"
#include "kernels/softmax_ref.h"
#include "kernels/transform_ref.h"

namespace incept {
namespace {

using namespace gputest;
using testing::random_floats;
using testing::rel_error;
using bf16 = __nv_bfloat16;

// ---- bias + ReLU ---------------------------------------------------------------------------

template <typename T>
void check_bias_relu(int n, int c_total, int c0, int c, int h, int w) {
  const Slice sl = channel_slice(n, c_total, c0, c, h, w);
  const Nchw& v = sl.view;
  const auto y0 = rounded<T>(random_floats(sl.total, fresh_seed("bias_relu y")));
  const auto b = rounded<T>(random_floats(c, fresh_seed("bias_relu b")));
  // forward, in place in the slice; the rest of the parent is poison and must stay so
  std::vector<float> parent(sl.total, NAN);
  for (int i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < v.image(); ++j)
      parent[sl.offset + i * v.nstride() + j] = y0[sl.offset + i * v.nstride() + j];
  DeviceBuffer dy = upload<T>(parent), db = upload<T>(b);
  kernels::bias_relu_fwd(v, db.as<T>(), true, dy.as<T>() + sl.offset, nullptr);
  const auto got = download<T>(dy, sl.total);
  std::vector<float> ref = parent;
  ref::bias_add(v, b.data(), ref.data() + sl.offset);
  ref::relu_fwd(v, ref.data() + sl.offset, ref.data() + sl.offset);
  char what[160];
  std::snprintf(what, sizeof what, "bias_relu_fwd %s %dx%d(of %d)x%dx%d", name_of<T>(), n, c, c_total, h, w);
  report(what, rel_error(gather(sl, got), gather(sl, ref)), tol<T>(1e-6));
  EXPECT_EQ(written_outside(sl, got), 0u);

  // backward: dz = dy * (y > 0) into a poisoned slice, db accumulates onto its old value
  const auto g = rounded<T>(random_floats(sl.total, fresh_seed("bias_relu dy")));
  const auto db_old = rounded<T>(random_floats(c, fresh_seed("bias_relu db")));
  const std::vector<float> yref = rounded<T>(ref);
  DeviceBuffer d_y = upload<T>(yref), d_g = upload<T>(g), d_dz = poisoned<T>(sl.total),
               d_db = upload<T>(db_old);
  DeviceBuffer d_part(std::max<std::size_t>(kernels::relu_bias_bwd_scratch(v), 1) * 4);
  kernels::relu_bias_bwd(v, d_y.as<T>() + sl.offset, d_g.as<T>() + sl.offset, true, d_dz.as<T>() + sl.offset,
                         d_db.as<T>(), d_part.as<float>(), nullptr);
  const auto dz = download<T>(d_dz, sl.total);
  const auto dbv = download<T>(d_db, c);
  std::vector<float> dz_ref(sl.total, NAN), db_ref = db_old;
  ref::relu_bwd(v, yref.data() + sl.offset, g.data() + sl.offset, dz_ref.data() + sl.offset);
  ref::bias_grad(v, dz_ref.data() + sl.offset, db_ref.data());
  std::snprintf(what, sizeof what, "relu_bias_bwd dz %s %dx%d(of %d)x%dx%d", name_of<T>(), n, c, c_total, h,
                w);
  report(what, rel_error(gather(sl, dz), gather(sl, dz_ref)), tol<T>(1e-6));
  EXPECT_EQ(written_outside(sl, dz), 0u);
  std::snprintf(what, sizeof what, "relu_bias_bwd db (+=) %s", name_of<T>());
  report(what, rel_error(dbv, db_ref), tol<T>(1e-5));

  // relu_bwd with accumulate
  DeviceBuffer d_acc = upload<T>(y0);
  kernels::relu_bwd(v, d_y.as<T>() + sl.offset, d_g.as<T>() + sl.offset, d_acc.as<T>() + sl.offset, true,
                    nullptr);
  const auto acc = download<T>(d_acc, sl.total);
  std::vector<float> acc_ref = y0;
  ref::relu_bwd(v, yref.data() + sl.offset, g.data() + sl.offset, acc_ref.data() + sl.offset, true);
  std::snprintf(what, sizeof what, "relu_bwd (+=) %s", name_of<T>());
  report(what, rel_error(acc, acc_ref), tol<T>(1e-6));
}

TEST(GpuKernels, BiasRelu) {
  INCEPT_REQUIRE_GPU();
  check_bias_relu<float>(8, 256, 64, 128, 28, 28);  // inception_3a/3x3 in its concat slice
  check_bias_relu<bf16>(8, 256, 64, 128, 28, 28);
  check_bias_relu<float>(8, 832, 256, 320, 7, 7);
  check_bias_relu<bf16>(4, 1000, 0, 1000, 1, 1);  // FC output
  // split bias reduction with several images per chunk and a short last chunk
  check_bias_relu<float>(40, 96, 16, 64, 20, 20);
  check_bias_relu<bf16>(40, 64, 0, 64, 20, 20);
  check_bias_relu<float>(16, 64, 0, 64, 112, 112);  // conv1's plane
}

// ---- LRN -----------------------------------------------------------------------------------

template <typename T>
void check_lrn(int n, int c, int h, int w, bool strided, bool store_scale) {
  const LrnGeom g;  // 5, 1e-4, 0.75, 1
  const Nchw xs{n, c, h, w};
  const Slice ys = strided ? channel_slice(n, c + 32, 16, c, h, w) : dense(xs);
  // Inputs of conv-output magnitude so the scale term matters (alpha/size * sum x^2 ~ 0.1).
  const auto x = rounded<T>(random_floats(xs.count(), fresh_seed("lrn x"), -40.f, 40.f));
  DeviceBuffer dx_in = upload<T>(x), dy_out = poisoned<T>(ys.total), dscale(xs.count() * 4);
  dscale.fill_bytes(0xFF);
  kernels::lrn_fwd(xs, dx_in.as<T>(), g, ys.view, dy_out.as<T>() + ys.offset,
                   store_scale ? dscale.as<float>() : nullptr, nullptr);
  const auto y = download<T>(dy_out, ys.total);
  std::vector<float> yref(ys.total, NAN), sref(xs.count());
  ref::lrn_fwd(xs, x.data(), g, ys.view, yref.data() + ys.offset, sref.data());
  char what[160];
  std::snprintf(what, sizeof what, "lrn_fwd %s %dx%dx%dx%d%s", name_of<T>(), n, c, h, w,
                strided ? " (y slice)" : "");
  report(what, rel_error(gather(ys, y), gather(ys, yref)), tol<T>(1e-5));
  EXPECT_EQ(written_outside(ys, y), 0u);
  if (store_scale) {
    std::vector<float> s(xs.count());
    dscale.download(s.data(), s.size() * 4);
    report("lrn_fwd scale (fp32)", rel_error(s, sref), 1e-5);
  }
  // backward (reference fed the reference y and scale, the GPU its own y)
  const auto dy = rounded<T>(random_floats(ys.total, fresh_seed("lrn dy")));
  const auto yr = rounded<T>(yref);
  DeviceBuffer d_y = upload<T>(yr), d_dy = upload<T>(dy), d_dx = poisoned<T>(xs.count());
  kernels::lrn_bwd(xs, dx_in.as<T>(), ys.view, d_y.as<T>() + ys.offset, d_dy.as<T>() + ys.offset,
                   store_scale ? dscale.as<float>() : nullptr, g, d_dx.as<T>(), false, nullptr);
  const auto dxg = download<T>(d_dx, xs.count());
  std::vector<float> dxref(xs.count());
  ref::lrn_bwd(xs, x.data(), ys.view, yr.data() + ys.offset, dy.data() + ys.offset, sref.data(), g,
               dxref.data());
  std::snprintf(what, sizeof what, "lrn_bwd %s %dx%dx%dx%d scale %s", name_of<T>(), n, c, h, w,
                store_scale ? "stored" : "recomputed");
  report(what, rel_error(dxg, dxref), tol<T>(1e-5));
}

TEST(GpuKernels, LrnGoogLeNetShapes) {
  INCEPT_REQUIRE_GPU();
  check_lrn<float>(8, 64, 56, 56, false, true);   // pool1/norm1
  check_lrn<float>(8, 192, 56, 56, true, false);  // conv2/norm2
  check_lrn<bf16>(8, 64, 56, 56, true, false);
  check_lrn<bf16>(8, 192, 56, 56, false, true);
  check_lrn<float>(3, 7, 5, 9, false, false);  // fewer channels than a chunk, odd sizes
}

// ---- pooling -------------------------------------------------------------------------------

template <typename T>
void check_pool(const char* label, int n, int c, int h, int w, PoolGeom g, bool strided) {
  const Nchw xs0{n, c, h, w};
  const Nchw yd = pool_out_shape(xs0, g);
  ASSERT_EQ(yd.h, pool_out_shape(xs0, g).h);
  const Slice xs = strided ? channel_slice(n, c + 24, 8, c, h, w) : dense(xs0);
  const Slice ys = strided ? channel_slice(n, c + 16, 16, c, yd.h, yd.w) : dense(yd);
  const auto x = rounded<T>(random_floats(xs.total, fresh_seed("pool x")));
  DeviceBuffer d_x = upload<T>(x), d_y = poisoned<T>(ys.total), d_mask(yd.count() * 4);
  d_mask.fill_bytes(0xFF);
  const bool is_max = g.method == PoolMethod::kMax;
  kernels::pool_fwd(xs.view, d_x.as<T>() + xs.offset, g, ys.view, d_y.as<T>() + ys.offset,
                    is_max ? d_mask.as<std::int32_t>() : nullptr, nullptr);
  const auto y = download<T>(d_y, ys.total);
  std::vector<float> yref(ys.total, NAN);
  std::vector<std::int32_t> mref(yd.count(), -7), mask(yd.count());
  ref::pool_fwd(xs.view, x.data() + xs.offset, g, ys.view, yref.data() + ys.offset,
                is_max ? mref.data() : nullptr);
  char what[200];
  std::snprintf(what, sizeof what, "pool_fwd %s %s %dx%dx%dx%d -> %dx%d%s", label, name_of<T>(), n, c, h, w,
                yd.h, yd.w, strided ? " (slices)" : "");
  report(what, rel_error(gather(ys, y), gather(ys, yref)), tol<T>(1e-6));
  EXPECT_EQ(written_outside(ys, y), 0u);
  if (is_max) {
    d_mask.download(mask.data(), mask.size() * 4);
    EXPECT_EQ(mask, mref) << "max-pool argmax differs from the reference (first maximum wins)";
  }
  // backward, accumulating onto random dx (fan-out case) and overwriting a poisoned one
  const auto dy = rounded<T>(random_floats(ys.total, fresh_seed("pool dy")));
  const auto dx0 = rounded<T>(random_floats(xs.total, fresh_seed("pool dx0")));
  DeviceBuffer d_dy = upload<T>(dy), d_dx = poisoned<T>(xs.total), d_dxa = upload<T>(dx0);
  kernels::pool_bwd(xs.view, g, ys.view, d_dy.as<T>() + ys.offset,
                    is_max ? d_mask.as<std::int32_t>() : nullptr, d_dx.as<T>() + xs.offset, false, nullptr);
  kernels::pool_bwd(xs.view, g, ys.view, d_dy.as<T>() + ys.offset,
                    is_max ? d_mask.as<std::int32_t>() : nullptr, d_dxa.as<T>() + xs.offset, true, nullptr);
  const auto dx = download<T>(d_dx, xs.total), dxa = download<T>(d_dxa, xs.total);
  std::vector<float> dxref(xs.total, NAN), dxaref = dx0;
  ref::pool_bwd(xs.view, x.data() + xs.offset, g, ys.view, dy.data() + ys.offset,
                is_max ? mref.data() : nullptr, dxref.data() + xs.offset);
  ref::pool_bwd(xs.view, x.data() + xs.offset, g, ys.view, dy.data() + ys.offset,
                is_max ? mref.data() : nullptr, dxaref.data() + xs.offset, true);
  std::snprintf(what, sizeof what, "pool_bwd %s %s", label, name_of<T>());
  report(what, rel_error(gather(xs, dx), gather(xs, dxref)), tol<T>(1e-6));
  EXPECT_EQ(written_outside(xs, dx), 0u);
  std::snprintf(what, sizeof what, "pool_bwd (+=) %s %s", label, name_of<T>());
  report(what, rel_error(dxa, dxaref), tol<T>(1e-6));
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
  check_pool<T>("max 3x3 s2 CEIL", 8, 64, 112, 112, pool(PoolMethod::kMax, 3, 2), false);  // pool1
  check_pool<T>("max 3x3 s2 CEIL", 8, 480, 28, 28, pool(PoolMethod::kMax, 3, 2), true);    // pool3 28->14
  check_pool<T>("max 3x3 s2 CEIL", 4, 832, 14, 14, pool(PoolMethod::kMax, 3, 2), false);   // pool4 14->7
  check_pool<T>("max 3x3 s1 p1", 8, 192, 28, 28, pool(PoolMethod::kMax, 3, 1, 1), true);   // inception pool
  check_pool<T>("ave 5x5 s3", 8, 512, 14, 14, pool(PoolMethod::kAve, 5, 3), false);        // aux heads 14->4
  check_pool<T>("ave 7x7 s1", 8, 1024, 7, 7, pool(PoolMethod::kAve, 7, 1), true);          // pool5 7->1
  check_pool<T>("ave global", 2, 16, 9, 11, pool(PoolMethod::kAve, 1, 1, 0, true), false);
  check_pool<T>("ave 3x3 s2 p1 CEIL edge", 2, 8, 10, 13, pool(PoolMethod::kAve, 3, 2, 1), false);
  check_pool<T>("max 3x3 s2 p1 CEIL edge", 2, 8, 10, 13, pool(PoolMethod::kMax, 3, 2, 1), true);
}

TEST(GpuKernels, PoolingFp32) {
  INCEPT_REQUIRE_GPU();
  pool_suite<float>();
}
TEST(GpuKernels, PoolingBf16) {
  INCEPT_REQUIRE_GPU();
  pool_suite<bf16>();
}

// ---- softmax cross-entropy and accuracy (kernels/softmax_ref.h, in double) ---------------------

template <typename T>
void check_softmax(int n, int k, float loss_weight) {
  const auto logits = rounded<T>(random_floats(std::size_t(n) * k, fresh_seed("softmax logits"), -8.f, 8.f));
  std::mt19937 rng(static_cast<unsigned>(fresh_seed("labels")));
  std::vector<std::int32_t> labels(n);
  for (auto& l : labels) l = static_cast<std::int32_t>(rng() % k);
  DeviceBuffer d_l = upload<T>(logits), d_lab(n * 4), d_rows(n * 4), d_loss(4),
               d_g = poisoned<T>(logits.size());
  d_lab.upload(labels.data(), n * 4);
  d_loss.fill_bytes(0xFF);
  kernels::softmax_xent_fwd(n, k, d_l.as<T>(), d_lab.as<std::int32_t>(), loss_weight, d_rows.as<float>(),
                            d_loss.as<float>(), d_g.as<T>(), nullptr);
  const auto grad = download<T>(d_g, logits.size());
  float loss = 0;
  d_loss.download(&loss, 4);
  // CPU reference in double on the same (rounded) logits
  const Nchw xs{n, k, 1, 1};
  std::vector<double> ld(logits.begin(), logits.end()), prob(logits.size()), gd(logits.size());
  const double lref = ref::softmax_loss_fwd(xs, ld.data(), labels.data(), prob.data());
  ref::softmax_loss_bwd(xs, prob.data(), labels.data(), double(loss_weight), gd.data());
  const std::vector<float> gref(gd.begin(), gd.end());
  char what[160];
  std::snprintf(what, sizeof what, "softmax_xent loss %s N=%d K=%d w=%.1f", name_of<T>(), n, k, loss_weight);
  report(what, std::fabs(loss - lref) / std::fabs(lref), 1e-5);  // fp32 math for both dtypes
  std::snprintf(what, sizeof what, "softmax_xent dlogits %s", name_of<T>());
  report(what, rel_error(grad, gref), tol<T>(1e-5));

  // top-1 and top-5 accuracy (Caffe: correct when fewer than k scores >= the true one)
  DeviceBuffer d_hits(n * 4), d_acc(4);
  for (int top_k : {1, 5}) {
    d_acc.fill_bytes(0xFF);
    kernels::accuracy_fwd(n, k, d_l.as<T>(), d_lab.as<std::int32_t>(), top_k, d_hits.as<float>(),
                          d_acc.as<float>(), nullptr);
    float acc = -1;
    CUDA_CHECK(cudaDeviceSynchronize());
    d_acc.download(&acc, 4);
    const double acc_ref = ref::accuracy(xs, ld.data(), labels.data(), top_k);
    const int hits = int(std::lround(acc_ref * n));
    std::printf("  accuracy top-%d %s: gpu %.6f ref %.6f\n", top_k, name_of<T>(), acc, double(hits) / n);
    EXPECT_EQ(acc, float(hits) / n);
  }
}

TEST(GpuKernels, SoftmaxLossAndAccuracy) {
  INCEPT_REQUIRE_GPU();
  check_softmax<float>(128, 1000, 1.f);
  check_softmax<float>(32, 1000, 0.3f);
  check_softmax<bf16>(128, 1000, 0.3f);
  check_softmax<float>(5, 7, 1.f);
}

// ---- dropout (bit-exact mask) ----------------------------------------------------------------

template <typename T>
void check_dropout(int n, int c, int h, int w, float ratio, bool strided) {
  const Slice sl = strided ? channel_slice(n, c + 8, 4, c, h, w) : dense(Nchw{n, c, h, w});
  const auto x = rounded<T>(random_floats(sl.total, fresh_seed("dropout x")));
  ref::DropoutKey key{fresh_seed("dropout key"), 12345, 17};
  const std::uint64_t step = 777;
  DeviceBuffer d_x = upload<T>(x), d_y = poisoned<T>(sl.total), d_step(8), d_dx = poisoned<T>(sl.total);
  d_step.upload(&step, 8);
  kernels::dropout_fwd(sl.view, d_x.as<T>() + sl.offset, ratio, key, d_step.as<std::uint64_t>(),
                       d_y.as<T>() + sl.offset, nullptr);
  kernels::dropout_bwd(sl.view, d_x.as<T>() + sl.offset, ratio, key, d_step.as<std::uint64_t>(),
                       d_dx.as<T>() + sl.offset, false, nullptr);
  const auto y = download<T>(d_y, sl.total), dx = download<T>(d_dx, sl.total);
  key.step = step;  // the device read the step from d_step
  std::vector<float> yref(sl.total, NAN);
  ref::dropout_fwd(sl.view, x.data() + sl.offset, ratio, key, yref.data() + sl.offset);
  const auto yr = rounded<T>(yref);
  const auto g = gather(sl, y), gr = gather(sl, yr);
  std::size_t mismatched = 0, kept = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    mismatched += (g[i] == 0.f) != (gr[i] == 0.f) || g[i] != gr[i];
    kept += gr[i] != 0.f;
  }
  std::printf("  dropout %s ratio %.1f %dx%dx%dx%d: kept %.4f, %zu elements differ from the CPU mask\n",
              name_of<T>(), ratio, n, c, h, w, double(kept) / g.size(), mismatched);
  EXPECT_EQ(mismatched, 0u);
  EXPECT_EQ(written_outside(sl, y), 0u);
  EXPECT_NEAR(double(kept) / g.size(), 1.0 - ratio, 0.01);
  EXPECT_EQ(gather(sl, dx), g) << "backward mask differs from forward";
}

TEST(GpuKernels, DropoutMatchesCpuMaskBitExact) {
  INCEPT_REQUIRE_GPU();
  check_dropout<float>(128, 1024, 1, 1, 0.4f, false);  // pool5/drop_7x7_s1
  check_dropout<float>(16, 1024, 1, 1, 0.7f, true);    // lossN/drop_fc
  check_dropout<bf16>(128, 1024, 1, 1, 0.7f, false);
}

// ---- SGD over all parameters (kernels/sgd_ref.h, per segment) ---------------------------------

template <typename G>
void check_sgd() {
  // Segments with gaps between them (elements outside every segment must stay untouched).
  std::vector<kernels::SgdSegment> segs = {{0, 1000, 1.f, 1.f},
                                           {1000, 7, 2.f, 0.f},
                                           {1024, 50000, 1.f, 1.f},
                                           {51024, 1000, 2.f, 0.f},
                                           {52100, 333, 1.f, 1.f}};
  const std::int64_t n_total = 52500;
  auto w = random_floats(n_total, fresh_seed("sgd w"));
  auto h = random_floats(n_total, fresh_seed("sgd h"), -0.1f, 0.1f);
  const auto g = rounded<G>(random_floats(n_total, fresh_seed("sgd g")));
  const kernels::SgdStepParams p{0.01f, 0.9f, 2e-4f, 0.5f};
  DeviceBuffer d_segs(segs.size() * sizeof(kernels::SgdSegment)), d_p(sizeof p), d_w(n_total * 4),
      d_h(n_total * 4), d_g = upload<G>(g), d_lp = poisoned<bf16>(n_total);
  d_segs.upload(segs.data(), d_segs.bytes());
  d_p.upload(&p, sizeof p);
  d_w.upload(w.data(), n_total * 4);
  d_h.upload(h.data(), n_total * 4);
  kernels::sgd_update(int(segs.size()), d_segs.as<kernels::SgdSegment>(), n_total,
                      d_p.as<kernels::SgdStepParams>(), d_g.as<G>(), d_w.as<float>(), d_h.as<float>(),
                      d_lp.as<bf16>(), nullptr);
  const auto w_gpu = download<float>(d_w, n_total), h_gpu = download<float>(d_h, n_total);
  const auto lp = download<bf16>(d_lp, n_total);
  std::vector<float> w_ref = w, h_ref = h;
  std::size_t outside_ok = 0, outside = 0;
  for (const auto& s : segs) {
    std::vector<double> wd(w.begin() + s.offset, w.begin() + s.offset + s.count);
    std::vector<double> hd(h.begin() + s.offset, h.begin() + s.offset + s.count);
    std::vector<double> gd(s.count);
    for (std::int64_t i = 0; i < s.count; ++i) gd[i] = double(g[s.offset + i]) * p.grad_scale;
    ref::sgd_update<double>(s.count, double(p.lr) * s.lr_mult, p.momentum,
                            double(p.weight_decay) * s.decay_mult, wd.data(), gd.data(), hd.data());
    for (std::int64_t i = 0; i < s.count; ++i)
      w_ref[s.offset + i] = float(wd[i]), h_ref[s.offset + i] = float(hd[i]);
  }
  std::vector<char> in(n_total, 0);
  for (const auto& s : segs) std::fill(in.begin() + s.offset, in.begin() + s.offset + s.count, 1);
  for (std::int64_t i = 0; i < n_total; ++i)
    if (!in[i]) {
      ++outside;
      outside_ok += w_gpu[i] == w[i] && h_gpu[i] == h[i] && lp[i] != lp[i];
    }
  char what[120];
  std::snprintf(what, sizeof what, "sgd_update weights (grad %s)", kernels::dtype_name(dtype_of<G>()));
  report(what, rel_error(w_gpu, w_ref), 1e-6);
  report("sgd_update momentum history", rel_error(h_gpu, h_ref), 1e-6);
  std::vector<float> lp_in, w_in;
  for (std::int64_t i = 0; i < n_total; ++i)
    if (in[i]) lp_in.push_back(lp[i]), w_in.push_back(w_ref[i]);
  report("sgd_update bf16 weight copy", rel_error(lp_in, w_in), 1e-2);
  EXPECT_EQ(outside_ok, outside) << "elements outside every segment were modified";
}

TEST(GpuKernels, SgdUpdateAllParameters) {
  INCEPT_REQUIRE_GPU();
  check_sgd<float>();
  check_sgd<bf16>();
}

// ---- input transform (kernels/transform_ref.h on HWC BGR bytes) -------------------------------

template <typename T>
void check_input_transform(bool mean_image) {
  TransformCase c = make_transform_case(mean_image);
  const int crop = TransformCase::kCrop;
  const Slice ys = dense(Nchw{TransformCase::kN, 3, crop, crop});
  DeviceBuffer d_y = poisoned<T>(ys.total);
  kernels::input_transform_fwd(c.t, c.src.as<std::uint8_t>(), c.params.as<kernels::CropParams>(), ys.view,
                               d_y.as<T>(), nullptr);
  const auto y = download<T>(d_y, ys.total);
  char what[120];
  std::snprintf(what, sizeof what, "input_transform %s crop 224 mirror, mean %s", name_of<T>(),
                mean_image ? "image" : "values");
  report(what, rel_error(y, c.ref), tol<T>(1e-7));
}

TEST(GpuKernels, InputTransform) {
  INCEPT_REQUIRE_GPU();
  check_input_transform<float>(true);
  check_input_transform<float>(false);
  check_input_transform<bf16>(true);
}

// ---- memset nodes as kernel nodes (engine/graph_rewrite.h) -----------------------------------

TEST(GpuKernels, MemsetNodesBecomeKernelNodes) {
  INCEPT_REQUIRE_GPU();
  constexpr std::size_t kBytes = 96;
  std::vector<DeviceBuffer> buf;
  for (int i = 0; i < 4; ++i) {
    buf.emplace_back(kBytes);
    CUDA_CHECK(cudaMemset(buf.back().data(), 0x11, kBytes));
  }
  cudaGraph_t g = nullptr;
  CUDA_CHECK(cudaGraphCreate(&g, 0));
  auto memset_node = [&](void* dst, unsigned value, unsigned elem, std::size_t width, std::size_t height,
                         std::size_t pitch, const cudaGraphNode_t* deps, std::size_t n) {
    cudaMemsetParams p{};
    p.dst = dst;
    p.value = value;
    p.elementSize = elem;
    p.width = width;
    p.height = height;
    p.pitch = pitch;
    cudaGraphNode_t node = nullptr;
    CUDA_CHECK(cudaGraphAddMemsetNode(&node, g, deps, n, &p));
    return node;
  };
  // A: all 0x22, then (after it) a 4-byte pattern in 3 rows of 5, 32 bytes apart; D: a copy of
  // A made after both (so the dependencies must survive); B: 7 halves; C: 9 bytes.
  const cudaGraphNode_t a0 = memset_node(buf[0].data(), 0x22, 1, kBytes, 1, 0, nullptr, 0);
  const cudaGraphNode_t a1 = memset_node(buf[0].data(), 0xDEADBEEFu, 4, 5, 3, 32, &a0, 1);
  memset_node(buf[1].data(), 0xBEEF, 2, 7, 1, 0, nullptr, 0);
  memset_node(buf[2].data(), 0x5A, 1, 9, 1, 0, nullptr, 0);
  // A large one stays a memset node.
  DeviceBuffer big(kMemsetKernelMaxBytes + 4);
  memset_node(big.data(), 0x33, 4, big.bytes() / 4, 1, 0, nullptr, 0);
  cudaGraphNode_t copy = nullptr;
  CUDA_CHECK(cudaGraphAddMemcpyNode1D(&copy, g, &a1, 1, buf[3].data(), buf[0].data(), kBytes,
                                      cudaMemcpyDeviceToDevice));
  EXPECT_EQ(memset_nodes_to_kernels(g), 4);
  std::size_t n = 0;
  CUDA_CHECK(cudaGraphGetNodes(g, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  CUDA_CHECK(cudaGraphGetNodes(g, nodes.data(), &n));
  int kernels = 0, memsets = 0;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType t{};
    CUDA_CHECK(cudaGraphNodeGetType(node, &t));
    kernels += t == cudaGraphNodeTypeKernel;
    memsets += t == cudaGraphNodeTypeMemset;
  }
  EXPECT_EQ(kernels, 4);
  EXPECT_EQ(memsets, 1);
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
  for (int rep = 0; rep < 3; ++rep) CUDA_CHECK(cudaGraphLaunch(exec, nullptr));
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<std::vector<unsigned char>> got(4, std::vector<unsigned char>(kBytes));
  for (int i = 0; i < 4; ++i)
    CUDA_CHECK(cudaMemcpy(got[i].data(), buf[i].data(), kBytes, cudaMemcpyDeviceToHost));
  std::vector<unsigned char> a(kBytes, 0x22), b(kBytes, 0x11), c(kBytes, 0x11);
  const unsigned word = 0xDEADBEEFu;
  for (int r = 0; r < 3; ++r)
    for (int e = 0; e < 5; ++e) std::memcpy(&a[r * 32 + e * 4], &word, 4);
  const unsigned short half = 0xBEEF;
  for (int e = 0; e < 7; ++e) std::memcpy(&b[e * 2], &half, 2);
  for (int e = 0; e < 9; ++e) c[e] = 0x5A;
  EXPECT_EQ(got[0], a);
  EXPECT_EQ(got[1], b);
  EXPECT_EQ(got[2], c);
  EXPECT_EQ(got[3], a) << "the copy after the memsets ran before them";
  std::vector<unsigned> big_got(big.bytes() / 4);
  CUDA_CHECK(cudaMemcpy(big_got.data(), big.data(), big.bytes(), cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::count(big_got.begin(), big_got.end(), 0x33u), std::ptrdiff_t(big_got.size()));
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(g));
}

// ---- 3xTF32 GEMM ---------------------------------------------------------------------------

// One problem of each operand layout, ragged edges (partial tiles in m, n and k), batches with
// strides, a strided C whose gaps must stay poison, alpha and beta. Against the kernel's own
// arithmetic in double (gemm_tf32x3_ref; only fp32 accumulation differs), and against the exact
// product: the error must be fp32's, not TF32's (2^-11 ~ 5e-4).
struct Tf32x3Case {
  bool ta, tb;
  int m, n, k, batch;
  float alpha, beta;
  kernels::Tf32x3Tile tile = kernels::Tf32x3Tile::kAuto;
};

const kernels::Tf32x3Tile kAllTiles[] = {kernels::Tf32x3Tile::k64x128, kernels::Tf32x3Tile::k128x128,
                                         kernels::Tf32x3Tile::k32x128, kernels::Tf32x3Tile::k16x128,
                                         kernels::Tf32x3Tile::k128x32, kernels::Tf32x3Tile::k64x64};

void check_tf32x3(const Tf32x3Case& cs) {
  kernels::GemmProblem p;
  p.trans_a = cs.ta, p.trans_b = cs.tb, p.m = cs.m, p.n = cs.n, p.k = cs.k, p.batch = cs.batch;
  p.alpha = cs.alpha, p.beta = cs.beta, p.tile = cs.tile;
  p.lda = (cs.ta ? cs.k : cs.m) + 4;
  p.ldb = (cs.tb ? cs.n : cs.k) + 8;
  p.ldc = cs.m + 4;
  const long long a_cols = cs.ta ? cs.m : cs.k, b_cols = cs.tb ? cs.k : cs.n;
  p.stride_a = p.lda * a_cols + 16, p.stride_b = p.ldb * b_cols + 4, p.stride_c = p.ldc * cs.n + 8;
  const auto a = random_floats(p.stride_a * cs.batch, fresh_seed("tf32x3 A"));
  const auto b = random_floats(p.stride_b * cs.batch, fresh_seed("tf32x3 B"));
  std::vector<float> c0 = random_floats(p.stride_c * cs.batch, fresh_seed("tf32x3 C"));
  // Gaps of C (rows m..ldc, the batch padding) are NaN: the kernel must not write them, and
  // with beta = 0 it must not read C at all, so make the whole of C NaN then.
  for (long long z = 0; z < cs.batch; ++z)
    for (long long i = 0; i < p.stride_c; ++i)
      if (cs.beta == 0.f || i >= p.ldc * cs.n || i % p.ldc >= cs.m) c0[z * p.stride_c + i] = NAN;
  DeviceBuffer da = upload<float>(a), db = upload<float>(b), dc = upload<float>(c0);
  p.a = da.as<float>(), p.b = db.as<float>(), p.c = dc.as<float>();
  ASSERT_TRUE(kernels::tf32x3_supported(p));
  kernels::gemm_tf32x3(p, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = download<float>(dc, c0.size());
  double num_k = 0, num_x = 0, den = 0;
  std::size_t gaps_written = 0;
  for (int z = 0; z < cs.batch; ++z) {
    std::vector<double> ref(std::size_t(p.ldc) * cs.n), exact(ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = exact[i] = c0[z * p.stride_c + i];
    kernels::gemm_tf32x3_ref(p, a.data() + z * p.stride_a, b.data() + z * p.stride_b, ref.data());
    for (int j = 0; j < cs.n; ++j)
      for (int i = 0; i < cs.m; ++i) {
        double s = 0;
        for (int l = 0; l < cs.k; ++l)
          s += double(cs.ta ? a[z * p.stride_a + std::size_t(i) * p.lda + l]
                            : a[z * p.stride_a + std::size_t(l) * p.lda + i]) *
               double(cs.tb ? b[z * p.stride_b + std::size_t(l) * p.ldb + j]
                            : b[z * p.stride_b + std::size_t(j) * p.ldb + l]);
        double& e = exact[std::size_t(j) * p.ldc + i];
        e = cs.alpha * s + (cs.beta == 0.f ? 0.0 : cs.beta * e);
      }
    for (long long i = 0; i < p.stride_c; ++i) {
      const float g = got[z * p.stride_c + i];
      const bool inside = i < p.ldc * cs.n && i % p.ldc < cs.m;
      if (!inside) {
        gaps_written += !std::isnan(g);
        continue;
      }
      num_k += (g - ref[i]) * (g - ref[i]);
      num_x += (g - exact[i]) * (g - exact[i]);
      den += exact[i] * exact[i];
    }
  }
  char what[160];
  bool transposed = false;
  const int tile = int(kernels::tf32x3_tile(p, &transposed));
  std::snprintf(what, sizeof what, "tf32x3 %c%c m %d n %d k %d batch %d alpha %g beta %g, tile %d%s",
                cs.ta ? 'T' : 'N', cs.tb ? 'T' : 'N', cs.m, cs.n, cs.k, cs.batch, cs.alpha, cs.beta, tile,
                transposed ? " (C^T)" : "");
  report(std::string(what) + " vs its arithmetic", std::sqrt(num_k / den), 1e-6);
  report(std::string(what) + " vs exact", std::sqrt(num_x / den), 2e-6);
  EXPECT_EQ(gaps_written, 0u) << what;
}

TEST(GpuKernels, Tf32x3GemmMatchesReference) {
  INCEPT_REQUIRE_GPU();
  if (kernels::compute_capability() < 80)
    GTEST_SKIP() << "3xTF32 needs compute capability 8.0 (cuBLAS runs instead)";
  const Tf32x3Case cases[] = {
      {true, false, 192, 200, 576, 1, 1.f, 0.f},   // forward (64-row tiles), ragged n
      {false, false, 300, 132, 100, 2, 1.f, 1.f},  // data gradient, accumulating, batched
      {false, true, 128, 64, 1000, 3, 1.f, 0.f},   // weight gradient slices into partials (as C^T)
      {true, true, 36, 260, 44, 1, -0.5f, 0.25f},  // the fourth layout, ragged k tile
      {true, false, 256, 96, 8, 1, 1.f, 0.f},      // one partial k tile
      {true, false, 66, 50, 64, 1, 1.f, 1.f},      // C^T launched, scalar epilogue (m % 4 != 0)
      {true, false, 16, 300, 192, 1, 1.f, 0.f},    // a narrow forward (5x5_reduce): 16 x 128 tiles
      {true, false, 24, 260, 400, 1, 1.f, 1.f},    // 32 x 128, accumulating
      {false, true, 152, 64, 3136, 4, 1.f, 0.f},   // conv1's weight gradient slices: 64 x 64 (as C^T)
  };
  for (const Tf32x3Case& cs : cases) check_tf32x3(cs);
  // every tile on every layout, ragged in m, n and k
  for (const kernels::Tf32x3Tile t : kAllTiles)
    for (const Tf32x3Case& cs : {Tf32x3Case{true, false, 72, 140, 100, 1, 1.f, 0.f, t},
                                 Tf32x3Case{false, false, 40, 76, 72, 2, 1.f, 1.f, t},
                                 Tf32x3Case{false, true, 136, 36, 260, 2, 1.f, 0.f, t},
                                 Tf32x3Case{true, true, 20, 196, 44, 1, -0.5f, 0.25f, t}})
      check_tf32x3(cs);
}

// Implicit GEMM: the kernel reading a channels-last convolution's im2col rows in place
// (GemmProblem::rows) gives the bits of the same kernel on rows built explicitly, and matches
// its arithmetic in double; inputs are channel slices (pixel stride > c), with padding, a
// stride of 2, a ragged last tile of pixels, and conv1's 3 channels (a column per copy; rows
// padded with zero columns).
TEST(GpuKernels, Tf32x3ImplicitRowsEqualExplicitRows) {
  INCEPT_REQUIRE_GPU();
  if (kernels::compute_capability() < 80) GTEST_SKIP() << "3xTF32 needs compute capability 8.0";
  struct Geo {
    int images, h, w, c, ps, kh, kw, s, pad, m;
  };
  for (const Geo& ge : {Geo{3, 9, 7, 12, 20, 3, 3, 1, 1, 40}, Geo{2, 11, 10, 8, 8, 5, 5, 1, 2, 96},
                        Geo{2, 15, 13, 16, 24, 3, 3, 2, 1, 64}, Geo{2, 20, 18, 3, 3, 7, 7, 2, 3, 64}}) {
    kernels::ConvRows r;
    r.h = ge.h, r.w = ge.w, r.c = ge.c, r.pixel_stride = ge.ps,
    r.image_stride = std::int64_t(ge.h) * ge.w * ge.ps;
    r.kh = ge.kh, r.kw = ge.kw, r.sh = r.sw = ge.s, r.ph = r.pw = ge.pad;
    r.oh = (ge.h + 2 * ge.pad - ge.kh) / ge.s + 1, r.ow = (ge.w + 2 * ge.pad - ge.kw) / ge.s + 1;
    // k: the rows' columns, padded to a multiple of 4 with zero columns (conv1: 147 -> 148)
    const int taps_c = ge.kh * ge.kw * ge.c, k = (taps_c + 3) / 4 * 4, n = ge.images * r.oh * r.ow;
    const auto x = random_floats(std::size_t(ge.images) * r.image_stride, fresh_seed("implicit x"));
    const auto w = random_floats(std::size_t(ge.m) * k, fresh_seed("implicit w"));
    std::vector<float> rows(std::size_t(n) * k, 0.f);  // im2col_nhwc's layout: [pixel][(ty, tx, c)]
    for (int j = 0; j < n; ++j) {
      const int img = j / (r.oh * r.ow), oy = j / r.ow % r.oh, ox = j % r.ow;
      for (int l = 0; l < taps_c; ++l) {
        const int tap = l / ge.c, ch = l % ge.c, iy = oy * ge.s - ge.pad + tap / ge.kw,
                  ix = ox * ge.s - ge.pad + tap % ge.kw;
        if (iy >= 0 && iy < ge.h && ix >= 0 && ix < ge.w)
          rows[std::size_t(j) * k + l] = x[img * r.image_stride + (std::size_t(iy) * ge.w + ix) * ge.ps + ch];
      }
    }
    DeviceBuffer dx = upload<float>(x), dw = upload<float>(w), drows = upload<float>(rows),
                 y1 = poisoned<float>(std::size_t(n) * ge.m), y2 = poisoned<float>(std::size_t(n) * ge.m);
    DeviceBuffer zero_bias = upload<float>(std::vector<float>(ge.m, 0.f));
    // the launcher's tile, then each tile that takes a narrow side
    for (const kernels::Tf32x3Tile tile :
         {kernels::Tf32x3Tile::kAuto, kernels::Tf32x3Tile::k32x128, kernels::Tf32x3Tile::k16x128,
          kernels::Tf32x3Tile::k128x32, kernels::Tf32x3Tile::k64x64}) {
      kernels::GemmProblem p;  // y'[m, n] = W'^T rows': GpuFc::forward's problem
      p.trans_a = true, p.m = ge.m, p.n = n, p.k = k, p.tile = tile;
      p.bias = zero_bias.as<float>();  // (+0: keeps the explicit problem from running as C^T)
      p.a = dw.as<float>(), p.lda = k, p.b = drows.as<float>(), p.ldb = k, p.c = y1.as<float>(), p.ldc = ge.m;
      ASSERT_TRUE(kernels::tf32x3_supported(p));
      kernels::gemm_tf32x3(p, nullptr);
      kernels::GemmProblem q = p;
      q.b = nullptr, q.ldb = 0, q.c = y2.as<float>(), q.rows = r;
      q.rows.x = dx.as<float>();
      ASSERT_TRUE(kernels::tf32x3_supported(q));
      kernels::gemm_tf32x3(q, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      const auto explicit_y = download<float>(y1, std::size_t(n) * ge.m),
                 implicit_y = download<float>(y2, std::size_t(n) * ge.m);
      EXPECT_EQ(0, std::memcmp(explicit_y.data(), implicit_y.data(), explicit_y.size() * 4))
          << "implicit rows differ from explicit rows, " << ge.kh << "x" << ge.kw << " stride " << ge.s;
      std::vector<double> ref(explicit_y.size());
      kernels::GemmProblem h = q;
      h.rows.x = x.data(), h.bias = nullptr;
      kernels::gemm_tf32x3_ref(h, w.data(), nullptr, ref.data());
      double num = 0, den = 0;
      for (std::size_t i = 0; i < ref.size(); ++i)
        num += (implicit_y[i] - ref[i]) * (implicit_y[i] - ref[i]), den += ref[i] * ref[i];
      char what[140];
      std::snprintf(what, sizeof what, "implicit rows %dx%d stride %d pad %d, c %d of %d, m %d n %d, tile %d",
                    ge.kh, ge.kw, ge.s, ge.pad, ge.c, ge.ps, ge.m, n, int(kernels::tf32x3_tile(q)));
      report(what, std::sqrt(num / den), 1e-6);

      // The weight gradient dW'[k, m] = rows'[k, pixels] dy'[m, pixels]^T, one batch entry per
      // image: the rows in place (rows_are_a; the launcher runs it as C^T) against explicit rows in
      // the same orientation (C row-major), bitwise, and the first entry against the reference.
      const int hw = r.oh * r.ow;
      const auto dy = random_floats(std::size_t(n) * ge.m, fresh_seed("implicit dy"));
      DeviceBuffer ddy = upload<float>(dy), g1 = poisoned<float>(std::size_t(ge.images) * k * ge.m),
                   g2 = poisoned<float>(std::size_t(ge.images) * k * ge.m);
      kernels::GemmProblem e;
      e.trans_b = true, e.m = ge.m, e.n = k, e.k = hw, e.batch = ge.images, e.c_row_major = true,
      e.tile = tile;
      e.a = ddy.as<float>(), e.lda = ge.m, e.stride_a = std::int64_t(hw) * ge.m;
      e.b = drows.as<float>(), e.ldb = k, e.stride_b = std::int64_t(hw) * k;
      e.c = g1.as<float>(), e.ldc = k, e.stride_c = std::int64_t(k) * ge.m;
      ASSERT_TRUE(kernels::tf32x3_supported(e));
      kernels::gemm_tf32x3(e, nullptr);
      kernels::GemmProblem wg;
      wg.trans_b = true, wg.m = k, wg.n = ge.m, wg.k = hw, wg.batch = ge.images, wg.tile = tile;
      wg.rows = q.rows, wg.rows_are_a = true;
      wg.b = ddy.as<float>(), wg.ldb = ge.m, wg.stride_b = std::int64_t(hw) * ge.m;
      wg.c = g2.as<float>(), wg.ldc = k, wg.stride_c = std::int64_t(k) * ge.m;
      ASSERT_TRUE(kernels::tf32x3_supported(wg));
      kernels::gemm_tf32x3(wg, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      const auto ge1 = download<float>(g1, std::size_t(ge.images) * k * ge.m),
                 ge2 = download<float>(g2, std::size_t(ge.images) * k * ge.m);
      EXPECT_EQ(0, std::memcmp(ge1.data(), ge2.data(), ge1.size() * 4))
          << "implicit weight-gradient rows differ from explicit rows, " << ge.kh << "x" << ge.kw;
      std::vector<double> gref(std::size_t(k) * ge.m);
      kernels::GemmProblem gh = wg;
      gh.rows.x = x.data();
      kernels::gemm_tf32x3_ref(gh, nullptr, dy.data(), gref.data());
      num = den = 0;
      for (std::size_t i = 0; i < gref.size(); ++i)
        num += (ge2[i] - gref[i]) * (ge2[i] - gref[i]), den += gref[i] * gref[i];
      report(std::string(what) + " wgrad", std::sqrt(num / den), 1e-6);
    }
  }
}

// The flipped filters of the implicit data gradient, bit for bit against the CPU reference.
TEST(GpuKernels, FlipFiltersMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  const int cout = 24, kh = 5, kw = 3, cin = 20;
  const auto w = random_floats(std::size_t(cout) * kh * kw * cin, fresh_seed("flip w"));
  std::vector<float> want(w.size());
  ref::flip_filters_nhwc(cout, kh, kw, cin, w.data(), want.data());
  DeviceBuffer dw = upload<float>(w), dt = poisoned<float>(w.size());
  kernels::flip_filters_nhwc(cout, kh, kw, cin, dw.as<float>(), dt.as<float>(), nullptr);
  EXPECT_EQ(download<float>(dt, w.size()), want);
}

// Where the kernel is expected to beat strict cuBLAS (GpuFc's choice): the step's big forward,
// data- and weight-gradient GEMMs; not an inner product at batch 128 (16 CTAs) or a k of 16.
TEST(GpuKernels, Tf32x3PreferredShapes) {
  INCEPT_REQUIRE_GPU();
  if (kernels::compute_capability() < 80) GTEST_SKIP() << "3xTF32 needs compute capability 8.0";
  DeviceBuffer buf(64);
  auto problem = [&](bool ta, bool tb, int m, int n, int k, int batch) {
    kernels::GemmProblem p;
    p.trans_a = ta, p.trans_b = tb, p.m = m, p.n = n, p.k = k, p.batch = batch;
    p.a = p.b = buf.as<float>(), p.c = buf.as<float>();
    p.lda = ta ? k : m, p.ldb = tb ? n : k, p.ldc = m;
    return p;
  };
  EXPECT_TRUE(kernels::tf32x3_preferred(problem(true, false, 192, 401408, 576, 1)));   // conv2/3x3 forward
  EXPECT_TRUE(kernels::tf32x3_preferred(problem(false, false, 576, 401408, 192, 1)));  // its data gradient
  EXPECT_TRUE(kernels::tf32x3_preferred(problem(false, true, 576, 192, 6272, 64)));    // its weight gradient
  EXPECT_FALSE(kernels::tf32x3_preferred(problem(true, false, 1000, 128, 1024, 1)));   // loss3/classifier
  EXPECT_FALSE(kernels::tf32x3_preferred(problem(false, false, 400, 100352, 16, 1)));  // k = 16
  EXPECT_FALSE(kernels::tf32x3_supported(problem(true, false, 12, 100352, 192, 1)));   // m = 12
  // narrow sides take narrow tiles: conv1's weight gradient (152 taps x 64) in 64 x 64 tiles
  // (79 % used; 59 % in 64 x 128 ones), a 5x5_reduce's 16 output channels in 16 x 128
  EXPECT_TRUE(kernels::tf32x3_preferred(problem(false, true, 152, 64, 3136, 128)));
  EXPECT_EQ(kernels::tf32x3_tile(problem(false, true, 152, 64, 3136, 128)), kernels::Tf32x3Tile::k64x64);
  EXPECT_TRUE(kernels::tf32x3_preferred(problem(true, false, 16, 100352, 192, 1)));
  EXPECT_EQ(kernels::tf32x3_tile(problem(true, false, 16, 100352, 192, 1)), kernels::Tf32x3Tile::k16x128);
  EXPECT_EQ(kernels::tf32x3_tile(problem(true, false, 192, 401408, 576, 1)), kernels::Tf32x3Tile::k64x128);
}

// A long-k weight gradient as the net runs it (conv2/3x3's k is 401,408 pixels at batch 128):
// GpuFc::backward_filter slices the rows (at most GpuFc::kTf32x3WgradRows per slice with
// tf32x3), and the kernel adds each 32-row k-tile in fp32, so the tensor cores' truncating
// additions never run long. Error against the exact product: at most 2x strict cuBLAS's on the
// same problem through the same GpuFc (cuBLAS's own 3xTF32 GEMMs were at 40x, session 11).
TEST(GpuKernels, Tf32x3WeightGradientKeepsFp32Accuracy) {
  INCEPT_REQUIRE_GPU();
  if (kernels::compute_capability() < 80)
    GTEST_SKIP() << "3xTF32 needs compute capability 8.0 (cuBLAS runs instead)";
  const FcShape fs{401408, 64, 64};  // rows n (pixels), k input channels, m output channels
  // Activations after ReLU (>= 0) against gradients of both signs, as in a weight gradient.
  const auto x = random_floats(std::size_t(fs.n) * fs.k, fresh_seed("wgrad x"), 0.f, 1.f);
  const auto dy = random_floats(std::size_t(fs.n) * fs.m, fresh_seed("wgrad dy"), -0.5f, 1.f);
  DeviceBuffer dx = upload<float>(x), ddy = upload<float>(dy);
  CublasHandle h = make_cublas();
  std::vector<double> exact(std::size_t(fs.m) * fs.k, 0.0);  // dW[m][k] = sum_r dy[r][m] x[r][k]
  for (int r = 0; r < fs.n; ++r)
    for (int o = 0; o < fs.m; ++o) {
      const double g = dy[std::size_t(r) * fs.m + o];
      for (int i = 0; i < fs.k; ++i) exact[std::size_t(o) * fs.k + i] += g * x[std::size_t(r) * fs.k + i];
    }
  double errs[2] = {0, 0};
  for (const bool tf32x3 : {false, true}) {
    GpuFc fc(fs, kernels::DType::kF32, false, tf32x3);
    DeviceBuffer dw(exact.size() * 4), partial(std::max<std::size_t>(fc.wgrad_partial_elems(), 1) * 4);
    dw.fill_bytes(0);
    fc.backward_filter(h, dx.data(), ddy.data(), dw.data(), nullptr, partial.as<float>());
    CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = download<float>(dw, exact.size());
    double num = 0, den = 0;
    for (std::size_t i = 0; i < exact.size(); ++i) {
      num += (got[i] - exact[i]) * (got[i] - exact[i]);
      den += exact[i] * exact[i];
    }
    errs[tf32x3] = std::sqrt(num / den);
    std::printf("  weight gradient over %d rows, %s, %d slices: rel error %.3g\n", fs.n,
                tf32x3 ? "3xTF32" : "strict cuBLAS", fc.wgrad_chunks(), errs[tf32x3]);
  }
  report("tf32x3 weight gradient vs exact (limit: 2x strict cuBLAS's, at least 5e-7)", errs[1],
         std::max(2 * errs[0], 5e-7));
}

}  // namespace
}  // namespace incept

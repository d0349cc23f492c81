// cuDNN convolutions (engine/cudnn_conv.h) and the cuBLAS inner product (engine/gpu_fc.h)
// against the CPU references (kernels/conv_ref.h, kernels/fc_ref.h) at GoogLeNet's
// shapes, in fp32 (FMA math: rel err < 1e-4; FC < 1e-5) and bf16 (fp32 accumulation: < 1e-2), with
// algorithms chosen by measurement, outputs poisoned, and inputs/outputs that are channel
// slices of concat tensors (cudnnSetTensor4dDescriptorEx strides).
#include <gtest/gtest.h>

#include <cstdio>
#include <type_traits>

#include "engine/cudnn_conv.h"
#include "engine/gpu_fc.h"
#include "gpu_test_data.h"
#include "kernels/conv_ref.h"
#include "kernels/fc_ref.h"
#include "kernels/relu_ref.h"

namespace incept {
namespace {

using namespace gputest;
using testing::random_floats;
using testing::rel_error;
using bf16 = __nv_bfloat16;

struct ConvCase {
  const char* name;
  int n, c, h, w;
  ConvGeom g;
  int x_c_total, x_c0;  // input is channels [x_c0, x_c0 + c) of x_c_total (x_c_total == c: dense)
  int y_c_total, y_c0;  // output likewise
};

// Strict fp32 uses FMA math and no FFT/non-fused Winograd (engine/cudnn_conv.cpp); the
// algorithms still sum in other orders than the reference, hence 1e-4 rather than 1e-5.
constexpr double kConvFp32Tol = 1e-4;

ConvGeom geom(int k, int r, int s, int p) {
  ConvGeom g;
  g.num_output = k;
  g.kernel_h = g.kernel_w = r;
  g.stride_h = g.stride_w = s;
  g.pad_h = g.pad_w = p;
  return g;
}

// Host permutations between NCHW (KCRS) and NHWC (KRSC) of a whole [n, c, h, w] tensor.
std::vector<float> to_nhwc(const std::vector<float>& v, int n, int c, int h, int w) {
  std::vector<float> o(v.size());
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < c; ++k)
      for (int p = 0; p < h * w; ++p)
        o[(std::size_t(i) * h * w + p) * c + k] = v[(std::size_t(i) * c + k) * h * w + p];
  return o;
}
std::vector<float> to_nchw(const std::vector<float>& v, int n, int c, int h, int w) {
  std::vector<float> o(v.size());
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < c; ++k)
      for (int p = 0; p < h * w; ++p)
        o[(std::size_t(i) * c + k) * h * w + p] = v[(std::size_t(i) * h * w + p) * c + k];
  return o;
}

// nhwc: the same convolution with channels-last activations and KRSC weights on the device;
// host data is permuted on the way in and out and compared in NCHW against the same reference.
template <typename T>
void check_conv(const ConvCase& cc, bool nhwc = false) {
  const Slice xs = channel_slice(cc.n, cc.x_c_total, cc.x_c0, cc.c, cc.h, cc.w);
  const Nchw yd = ref::conv_out_shape(Nchw{cc.n, cc.c, cc.h, cc.w}, cc.g);
  const Slice ys = channel_slice(cc.n, cc.y_c_total, cc.y_c0, yd.c, yd.h, yd.w);
  const int k = cc.g.num_output;
  const std::size_t wn = std::size_t(k) * cc.c * cc.g.kernel_h * cc.g.kernel_w;
  const auto x = rounded<T>(random_floats(xs.total, fresh_seed("conv x")));
  const auto w = rounded<T>(random_floats(wn, fresh_seed("conv w"), -0.1f, 0.1f));
  const auto b = rounded<T>(random_floats(k, fresh_seed("conv b")));
  const int kr = cc.g.kernel_h, ks = cc.g.kernel_w;
  // Device layout of x / y / w (whole parents) and the element offset of each slice.
  auto dev_x = [&](const std::vector<float>& v) {
    return nhwc ? to_nhwc(v, cc.n, cc.x_c_total, cc.h, cc.w) : v;
  };
  auto dev_y = [&](const std::vector<float>& v) {
    return nhwc ? to_nhwc(v, cc.n, cc.y_c_total, yd.h, yd.w) : v;
  };
  auto dev_w = [&](const std::vector<float>& v) { return nhwc ? to_nhwc(v, k, cc.c, kr, ks) : v; };
  auto host_x = [&](const std::vector<float>& v) {
    return nhwc ? to_nchw(v, cc.n, cc.x_c_total, cc.h, cc.w) : v;
  };
  auto host_y = [&](const std::vector<float>& v) {
    return nhwc ? to_nchw(v, cc.n, cc.y_c_total, yd.h, yd.w) : v;
  };
  auto host_w = [&](const std::vector<float>& v) { return nhwc ? to_nchw(v, k, cc.c, kr, ks) : v; };
  const std::int64_t xo = nhwc ? cc.x_c0 : xs.offset, yo = nhwc ? cc.y_c0 : ys.offset;
  const char* lay = nhwc ? "NHWC" : "NCHW";
  ConvPlanOptions opt;
  opt.dtype = dtype_of<T>();
  opt.nhwc = nhwc;
  CudnnConv conv(xs.view, cc.g, ys.view, opt);
  CudnnHandle h = make_cudnn();
  // Planning: scratch buffers of the layer's shapes, one workspace of the limit.
  {
    DeviceBuffer sx = upload<T>(dev_x(x)), sw = upload<T>(dev_w(w)), sy = poisoned<T>(ys.total),
                 sb = upload<T>(b);
    DeviceBuffer ws(opt.workspace_limit);
    conv.choose_algorithms(h, sx.as<T>() + xo, sw.data(), sy.as<T>() + yo, sb.data(), ws.data(), ws.bytes());
  }
  std::printf("  %s %s %s: %s\n", cc.name, name_of<T>(), lay, conv.describe().c_str());
  DeviceBuffer ws(std::max<std::size_t>(conv.workspace_bytes(), 1));
  DeviceBuffer d_x = upload<T>(dev_x(x)), d_w = upload<T>(dev_w(w)), d_b = upload<T>(b),
               d_y = poisoned<T>(ys.total);
  std::vector<float> col(std::max<std::int64_t>(ref::conv_col_elems(xs.view, cc.g), 1));
  char what[200];

  // forward with fused/unfused bias + ReLU
  conv.forward_bias_relu(h, d_x.as<T>() + xo, d_w.data(), d_b.data(), d_y.as<T>() + yo, ws.data(),
                         ws.bytes());
  const auto y = host_y(download<T>(d_y, ys.total));
  std::vector<float> yref(ys.total, NAN);
  ref::conv_fwd(xs.view, x.data() + xs.offset, cc.g, w.data(), b.data(), ys.view, yref.data() + ys.offset,
                col.data());
  ref::relu_fwd(ys.view, yref.data() + ys.offset, yref.data() + ys.offset);
  std::snprintf(what, sizeof what, "conv fwd+bias+relu %s %s %s", cc.name, name_of<T>(), lay);
  report(what, rel_error(gather(ys, y), gather(ys, yref)), tol<T>(kConvFp32Tol));
  EXPECT_EQ(written_outside(ys, y), 0u);

  // plain forward, accumulate=false into a poisoned slice
  DeviceBuffer d_y2 = poisoned<T>(ys.total);
  conv.forward(h, d_x.as<T>() + xo, d_w.data(), d_y2.as<T>() + yo, ws.data(), ws.bytes());
  const auto y2 = host_y(download<T>(d_y2, ys.total));
  std::vector<float> y2ref(ys.total, NAN);
  ref::conv_fwd(xs.view, x.data() + xs.offset, cc.g, w.data(), static_cast<const float*>(nullptr), ys.view,
                y2ref.data() + ys.offset, col.data());
  std::snprintf(what, sizeof what, "conv fwd %s %s %s", cc.name, name_of<T>(), lay);
  report(what, rel_error(gather(ys, y2), gather(ys, y2ref)), tol<T>(kConvFp32Tol));

  // backward data (overwrite into a poisoned slice) and filter (+= onto random dw)
  const auto dy = rounded<T>(random_floats(ys.total, fresh_seed("conv dy")));
  const auto dw0 = rounded<T>(random_floats(wn, fresh_seed("conv dw0")));
  DeviceBuffer d_dy = upload<T>(dev_y(dy)), d_dx = poisoned<T>(xs.total), d_dw = upload<T>(dev_w(dw0));
  conv.backward_data(h, d_w.data(), d_dy.as<T>() + yo, d_dx.as<T>() + xo, ws.data(), ws.bytes());
  conv.backward_filter(h, d_x.as<T>() + xo, d_dy.as<T>() + yo, d_dw.data(), ws.data(), ws.bytes());
  const auto dx = host_x(download<T>(d_dx, xs.total)), dwg = host_w(download<T>(d_dw, wn));
  std::vector<float> dxref(xs.total, NAN), dwref = dw0;
  ref::conv_bwd_data(ys.view, dy.data() + ys.offset, cc.g, w.data(), xs.view, dxref.data() + xs.offset,
                     col.data());
  ref::conv_bwd_filter(xs.view, x.data() + xs.offset, ys.view, dy.data() + ys.offset, cc.g, dwref.data(),
                       static_cast<float*>(nullptr), col.data());
  std::snprintf(what, sizeof what, "conv bwd data %s %s %s", cc.name, name_of<T>(), lay);
  report(what, rel_error(gather(xs, dx), gather(xs, dxref)), tol<T>(kConvFp32Tol));
  EXPECT_EQ(written_outside(xs, dx), 0u);
  std::snprintf(what, sizeof what, "conv bwd filter (+=) %s %s %s", cc.name, name_of<T>(), lay);
  report(what, rel_error(dwg, dwref), tol<T>(kConvFp32Tol));

  // The backend API's plans on their own (channels-last bf16), whatever CudnnConv chose: the
  // fastest heuristic config of each direction against the same references (forward into a
  // poisoned output, backward data likewise, backward filter adding onto dw0 with beta = 1).
  // (Not for conv1's 3 input channels: no engine takes them, and the net runs conv1 itself.)
  if constexpr (std::is_same_v<T, bf16>) {
    if (!nhwc || cc.c % 8 != 0) return;
    DeviceBuffer sws(opt.workspace_limit), gy = poisoned<T>(ys.total), gdx = poisoned<T>(xs.total),
                                           gdw = upload<T>(dev_w(dw0));
    const struct {
      ConvDirection d;
      float beta;
      T* a;
      T* b;
      T* c;
      const char* name;
    } runs[3] = {
        {ConvDirection::kForward, 0.f, d_x.as<T>() + xo, d_w.as<T>(), gy.as<T>() + yo, "fwd"},
        {ConvDirection::kBackwardData, 0.f, gdx.as<T>() + xo, d_w.as<T>(), d_dy.as<T>() + yo, "bwd data"},
        {ConvDirection::kBackwardFilter, 1.f, d_x.as<T>() + xo, gdw.as<T>(), d_dy.as<T>() + yo,
         "bwd filter (+=)"}};
    for (const auto& r : runs) {
      CudnnGraphConv g(h, xs.view, cc.g, ys.view, r.d, r.beta);
      {  // planning on scratch copies (the search overwrites its output)
        DeviceBuffer sx = upload<T>(dev_x(x)), sw = upload<T>(dev_w(w)), sy = upload<T>(dev_y(dy));
        ASSERT_GT(g.choose(h, sx.as<T>() + xo, sw.data(), sy.as<T>() + yo, sws.data(), sws.bytes(), false),
                  0.f)
            << cc.name << " " << r.name << ": no backend plan ran";
      }
      std::printf("  %s bf16 NHWC %s: %s\n", cc.name, r.name, g.describe().c_str());
      DeviceBuffer gws(std::max<std::size_t>(g.workspace_bytes(), 16));
      g.run(h, r.a, r.b, r.c, gws.data());
    }
    const auto gyh = host_y(download<T>(gy, ys.total)), gdxh = host_x(download<T>(gdx, xs.total)),
               gdwh = host_w(download<T>(gdw, wn));
    std::snprintf(what, sizeof what, "graph conv fwd %s bf16 NHWC", cc.name);
    report(what, rel_error(gather(ys, gyh), gather(ys, y2ref)), tol<T>(kConvFp32Tol));
    EXPECT_EQ(written_outside(ys, gyh), 0u);
    std::snprintf(what, sizeof what, "graph conv bwd data %s bf16 NHWC", cc.name);
    report(what, rel_error(gather(xs, gdxh), gather(xs, dxref)), tol<T>(kConvFp32Tol));
    EXPECT_EQ(written_outside(xs, gdxh), 0u);
    std::snprintf(what, sizeof what, "graph conv bwd filter (+=) %s bf16 NHWC", cc.name);
    report(what, rel_error(gdwh, dwref), tol<T>(kConvFp32Tol));
  }
}

const ConvCase kCases[] = {
    // conv1/7x7_s2 at batch 2: 3x224x224 -> 64x112x112
    {"conv1 7x7 s2 3->64 224", 2, 3, 224, 224, geom(64, 7, 2, 3), 3, 0, 64, 0},
    // inception_3a/3x3: reads its reduce (dense), writes channels [64, 192) of 256
    {"3a/3x3 96->128 28 (y slice)", 2, 96, 28, 28, geom(128, 3, 1, 1), 96, 0, 256, 64},
    // inception_3a/5x5: 16->32 pad 2, writes channels [192, 224) of 256
    {"3a/5x5 16->32 28 (y slice)", 2, 16, 28, 28, geom(32, 5, 1, 2), 16, 0, 256, 192},
    // inception_4a/1x1 reading its input from a concat (x = all 480 of 480) into [0, 192) of 512
    {"4a/1x1 480->192 14 (y slice)", 4, 480, 14, 14, geom(192, 1, 1, 0), 480, 0, 512, 0},
    // a 1x1 reading a channel slice of a bigger tensor (x slice)
    {"1x1 64->32 7 (x and y slices)", 3, 64, 7, 7, geom(32, 1, 1, 0), 128, 32, 96, 48},
};

TEST(GpuConv, CudnnFp32MatchesCpu) {
  INCEPT_REQUIRE_GPU();
  for (const auto& c : kCases) check_conv<float>(c);
}

TEST(GpuConv, CudnnBf16MatchesCpu) {
  INCEPT_REQUIRE_GPU();
  for (const auto& c : kCases) check_conv<bf16>(c);
}

// Channels-last (NHWC activations, KRSC weights), the layout the bf16 tensor-core kernels
// prefer. Dense tensors only: cuDNN 9.19's legacy API found no forward algorithm for an NHWC
// output that is a channel slice (pixel stride 256, 128 channels; H100, 2026-11-26), so a
// channels-last net needs the concat copies or the graph API.
const ConvCase kNhwcCases[] = {
    {"conv1 7x7 s2 3->64 224", 2, 3, 224, 224, geom(64, 7, 2, 3), 3, 0, 64, 0},
    {"3a/3x3 96->128 28", 2, 96, 28, 28, geom(128, 3, 1, 1), 96, 0, 128, 0},
    {"3a/5x5 16->32 28", 2, 16, 28, 28, geom(32, 5, 1, 2), 16, 0, 32, 0},
    {"4a/1x1 480->192 14", 4, 480, 14, 14, geom(192, 1, 1, 0), 480, 0, 192, 0},
};

TEST(GpuConv, CudnnNhwcMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  for (const auto& c : kNhwcCases) check_conv<bf16>(c, true);
  for (const auto& c : kNhwcCases) check_conv<float>(c, true);
}

// Which NHWC channel-slice views cuDNN accepts (printed, not required): the x slice and the
// y slice of the cases above.
TEST(GpuConv, CudnnNhwcSlicesReport) {
  INCEPT_REQUIRE_GPU();
  for (const auto& c : kCases) {
    if (c.x_c_total == c.c && c.y_c_total == c.g.num_output) continue;
    try {
      check_conv<bf16>(c, true);
    } catch (const std::exception& e) {
      std::printf("  NHWC slice case %s: refused (%s)\n", c.name, e.what());
    }
  }
}

template <typename T>
void check_fc(int n, int kin, int m, bool relu) {
  const auto x = rounded<T>(random_floats(std::size_t(n) * kin, fresh_seed("fc x")));
  const auto w = rounded<T>(random_floats(std::size_t(m) * kin, fresh_seed("fc w"), -0.05f, 0.05f));
  const auto b = rounded<T>(random_floats(m, fresh_seed("fc b")));
  GpuFc fc(FcShape{n, kin, m}, dtype_of<T>());
  CublasHandle h = make_cublas();
  DeviceBuffer d_x = upload<T>(x), d_w = upload<T>(w), d_b = upload<T>(b),
               d_y = poisoned<T>(std::size_t(n) * m);
  fc.forward(h, d_x.data(), d_w.data(), d_b.data(), relu, d_y.data());
  const auto y = download<T>(d_y, std::size_t(n) * m);
  std::vector<float> yref(std::size_t(n) * m);
  const Nchw xs{n, kin, 1, 1}, ys{n, m, 1, 1};
  FcGeom g;
  g.num_output = m;
  ref::fc_fwd(xs, x.data(), g, w.data(), b.data(), ys, yref.data());
  if (relu) ref::relu_fwd(ys, yref.data(), yref.data());
  char what[160];
  std::snprintf(what, sizeof what, "fc fwd %s N=%d K=%d M=%d%s", name_of<T>(), n, kin, m,
                relu ? " +relu" : "");
  report(what, rel_error(y, yref), tol<T>(1e-5));

  const auto dy = rounded<T>(random_floats(std::size_t(n) * m, fresh_seed("fc dy")));
  const auto dw0 = rounded<T>(random_floats(w.size(), fresh_seed("fc dw0")));
  const auto db0 = rounded<T>(random_floats(m, fresh_seed("fc db0")));
  DeviceBuffer d_dy = upload<T>(dy), d_dx = poisoned<T>(x.size()), d_dw = upload<T>(dw0),
               d_db = upload<T>(db0);
  fc.backward_data(h, d_dy.data(), d_w.data(), d_dx.data());
  fc.backward_filter(h, d_x.data(), d_dy.data(), d_dw.data(), d_db.data());
  const auto dx = download<T>(d_dx, x.size()), dw = download<T>(d_dw, w.size()), db = download<T>(d_db, m);
  std::vector<float> dxref(x.size()), dwref = dw0, dbref = db0;
  ref::fc_bwd_data(ys, dy.data(), g, w.data(), xs, dxref.data());
  ref::fc_bwd_filter(xs, x.data(), ys, dy.data(), g, dwref.data(), dbref.data());
  std::snprintf(what, sizeof what, "fc bwd data %s", name_of<T>());
  report(what, rel_error(dx, dxref), tol<T>(1e-5));
  std::snprintf(what, sizeof what, "fc bwd filter (+=) %s", name_of<T>());
  report(what, rel_error(dw, dwref), tol<T>(1e-5));
  std::snprintf(what, sizeof what, "fc bwd bias (+=) %s", name_of<T>());
  report(what, rel_error(db, dbref), tol<T>(1e-5));
}

TEST(GpuConv, CublasInnerProductMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  check_fc<float>(32, 1024, 1000, false);  // loss3/classifier
  check_fc<float>(16, 2048, 1024, true);   // lossN/fc (128*4*4 inputs) + relu
  check_fc<bf16>(32, 1024, 1000, false);
  check_fc<bf16>(16, 2048, 1024, true);
}

}  // namespace
}  // namespace incept

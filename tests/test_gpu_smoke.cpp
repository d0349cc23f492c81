// The first real GPU test: a hand-written kernel, a cuBLAS GEMM and a cuDNN convolution,
// each compared with a CPU computation in double precision on random data.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/owners.h"
#include "kernels/device_facts.h"
#include "kernels/elementwise.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using testing::random_floats;
using testing::rel_error;

TEST(GpuSmoke, DeviceIsDescribed) {
  INCEPT_REQUIRE_GPU();
  const std::string d = describe_gpu(0);
  std::printf("GPU 0: %s\n", d.c_str());
  EXPECT_FALSE(d.empty());
}

// Launchers size grids by the SM count read from the device (kernels/device_facts.h), never by
// a number from the card a kernel was tuned on. Threads racing to fill the cache all get the
// device's count.
TEST(GpuSmoke, SmCountComesFromTheDevice) {
  INCEPT_REQUIRE_GPU();
  const std::vector<GpuInfo> gpus = list_gpus();
  int current = -1;
  CUDA_CHECK(cudaGetDevice(&current));
  std::vector<int> seen(8, 0);
  std::vector<std::thread> threads;
  for (int& s : seen)
    threads.emplace_back([&s, current] {  // no exception may leave a thread
      try {
        if (cudaSetDevice(current) == cudaSuccess) s = kernels::sm_count();
      } catch (const std::exception&) {
        s = -1;
      }
    });
  for (std::thread& t : threads) t.join();
  for (int s : seen) EXPECT_EQ(s, gpus[std::size_t(current)].multiprocessors);
  for (const GpuInfo& g : gpus) EXPECT_EQ(kernels::sm_count(g.index), g.multiprocessors) << g.name;
}

TEST(GpuSmoke, HandWrittenKernelMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  const std::size_t n = 1'000'003;  // not a multiple of the block size
  auto x = random_floats(n, 1), y = random_floats(n, 2);
  DeviceBuffer dx(n * 4), dy(n * 4);
  dx.upload(x.data(), n * 4);
  dy.upload(y.data(), n * 4);
  kernels::axpby_fwd(n, 1.5f, dx.as<float>(), -0.25f, dy.as<float>(), nullptr);
  std::vector<float> got(n);
  dy.download(got.data(), n * 4);
  kernels::axpby_ref(n, 1.5f, x.data(), -0.25f, y.data());
  EXPECT_LT(rel_error(got, y), 1e-6);
}

// The fixed-order row sum behind the NCHW 1x1 weight gradient (engine/conv1x1_gemm.h).
TEST(GpuSmoke, SumRowsAddMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  const int rows = 128;
  const long long cols = 832 * 384 + 5;
  auto src = random_floats(std::size_t(rows) * cols, 5), dst = random_floats(std::size_t(cols), 6);
  DeviceBuffer ds(src.size() * 4), dd(dst.size() * 4);
  ds.upload(src.data(), src.size() * 4);
  dd.upload(dst.data(), dst.size() * 4);
  kernels::sum_rows_add(rows, cols, ds.as<float>(), dd.as<float>(), nullptr);
  std::vector<float> got(dst.size());
  dd.download(got.data(), got.size() * 4);
  kernels::sum_rows_add_ref(rows, cols, src.data(), dst.data());
  EXPECT_LT(rel_error(got, dst), 1e-6);
}

// fp32 -> bf16 -> fp32 in place (GpuNetOptions::round_grads_bf16): the same bits as the host
// rounding, ties to even, infinities, NaN, denormals and values past bf16's largest included.
TEST(GpuSmoke, RoundToBf16MatchesCpu) {
  INCEPT_REQUIRE_GPU();
  std::vector<float> x = random_floats(100003, 7, -3.f, 3.f);
  const float specials[] = {0.f,
                            -0.f,
                            1.f + 0x1p-8f,      // tie: down to 1 (even)
                            1.f + 3 * 0x1p-8f,  // tie: up to 1 + 2^-6 (even)
                            3.4e38f,            // past the midpoint above bf16's largest finite: inf
                            1e-40f,             // fp32 denormal
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  DeviceBuffer d(x.size() * 4);
  d.upload(x.data(), x.size() * 4);
  kernels::round_to_bf16(x.size(), d.as<float>(), nullptr);
  std::vector<float> got(x.size());
  d.download(got.data(), got.size() * 4);
  kernels::round_to_bf16_ref(x.size(), x.data());
  EXPECT_EQ(x[2], 1.f);
  EXPECT_EQ(x[3], 1.f + 0x1p-6f);
  EXPECT_TRUE(std::isinf(x[4]));
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << i;
      continue;
    }
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(x[i])) << i << ": " << x[i];
  }
}

// The 3xTF32 operand split: the same bits as the CPU reference, big with TF32's 10 mantissa
// bits (low 13 bits zero), big + small exactly x.
TEST(GpuSmoke, SplitTf32MatchesCpu) {
  INCEPT_REQUIRE_GPU();
  std::vector<float> x = random_floats(100003, 9, -3.f, 3.f);
  const float specials[] = {0.f,
                            -0.f,
                            1.f + 0x1p-11f,             // tie: down to 1 (even)
                            1.f + 3 * 0x1p-11f,         // tie: up to 1 + 2^-9 (even)
                            1.f + 0x1p-11f + 0x1p-20f,  // past the tie: up
                            3.4028235e38f,              // rounding would overflow: truncated
                            1e-40f,                     // fp32 denormal
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  DeviceBuffer d(x.size() * 4), db(x.size() * 4), ds(x.size() * 4);
  d.upload(x.data(), x.size() * 4);
  kernels::split_tf32(x.size(), d.as<float>(), db.as<float>(), ds.as<float>(), nullptr);
  std::vector<float> gb(x.size()), gs(x.size()), rb(x.size()), rs(x.size());
  db.download(gb.data(), gb.size() * 4);
  ds.download(gs.data(), gs.size() * 4);
  kernels::split_tf32_ref(x.size(), x.data(), rb.data(), rs.data());
  EXPECT_EQ(rb[2], 1.f);
  EXPECT_EQ(rb[3], 1.f + 0x1p-9f);
  EXPECT_EQ(rb[4], 1.f + 0x1p-10f);
  EXPECT_EQ(rb[5], std::bit_cast<float>(std::bit_cast<std::uint32_t>(3.4028235e38f) & 0xFFFFE000u));
  EXPECT_TRUE(std::isinf(rb[7]) && rs[7] == 0.f);
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(gb[i]), std::bit_cast<std::uint32_t>(rb[i])) << i << ": " << x[i];
    ASSERT_EQ(std::bit_cast<std::uint32_t>(gs[i]), std::bit_cast<std::uint32_t>(rs[i])) << i << ": " << x[i];
    if (!std::isfinite(x[i])) continue;
    ASSERT_EQ(std::bit_cast<std::uint32_t>(rb[i]) & 0x1FFFu, 0u) << i;
    ASSERT_EQ(rb[i] + rs[i], x[i]) << i;
    // Half a TF32 unit at most, where it rounded (not for the truncated one, nor denormals).
    if (i != 5 && std::isnormal(x[i])) {
      ASSERT_LE(std::abs(rs[i]), std::abs(x[i]) * 0x1p-11f) << i;
    }
  }
}

TEST(GpuSmoke, CublasGemmMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  // C[M,N] = A[M,K] * B[K,N], row-major on the host; cuBLAS sees column-major, so we ask it
  // for C^T = B^T * A^T, which in column-major is exactly our row-major C.
  const int M = 130, N = 77, K = 300;
  auto a = random_floats(std::size_t(M) * K, 3), b = random_floats(std::size_t(K) * N, 4);
  std::vector<float> ref(std::size_t(M) * N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(a[std::size_t(i) * K + k]) * b[std::size_t(k) * N + j];
      ref[std::size_t(i) * N + j] = float(s);
    }
  DeviceBuffer da(a.size() * 4), db(b.size() * 4), dc(ref.size() * 4);
  da.upload(a.data(), a.size() * 4);
  db.upload(b.data(), b.size() * 4);
  dc.fill_bytes(0xFF);  // poison: NaN everywhere until written
  CublasHandle h = make_cublas();
  CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));  // plain fp32, no TF32
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, db.as<float>(), N, da.as<float>(), K,
                           &beta, dc.as<float>(), N));
  std::vector<float> got(ref.size());
  dc.download(got.data(), got.size() * 4);
  const double err = rel_error(got, ref);
  std::printf("cuBLAS sgemm %dx%dx%d rel error %.3g\n", M, N, K, err);
  EXPECT_LT(err, 1e-5);
}

TEST(GpuSmoke, CudnnConvolutionMatchesCpu) {
  INCEPT_REQUIRE_GPU();
  // NCHW fp32, 3x3 stride 2 pad 1 (odd sizes so edges and strides are exercised).
  const int N = 2, C = 5, H = 17, W = 19, K = 8, R = 3, S = 3, stride = 2, pad = 1;
  const int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
  auto x = random_floats(std::size_t(N) * C * H * W, 5);
  auto w = random_floats(std::size_t(K) * C * R * S, 6);
  std::vector<float> ref(std::size_t(N) * K * P * Q);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double s = 0;
          for (int c = 0; c < C; ++c)
            for (int r = 0; r < R; ++r)
              for (int t = 0; t < S; ++t) {
                const int h = p * stride - pad + r, ww = q * stride - pad + t;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                s += double(x[((std::size_t(n) * C + c) * H + h) * W + ww]) *
                     w[((std::size_t(k) * C + c) * R + r) * S + t];
              }
          ref[((std::size_t(n) * K + k) * P + p) * Q + q] = float(s);
        }

  CudnnHandle h = make_cudnn();
  TensorDesc xd = make_tensor_desc(), yd = make_tensor_desc();
  FilterDesc wd = make_filter_desc();
  ConvDesc cd = make_conv_desc();
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, K, C, R, S));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH));  // strict fp32
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &on, &oc, &oh, &ow));
  ASSERT_EQ(oh, P);
  ASSERT_EQ(ow, Q);
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, K, P, Q));
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int found = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, xd, wd, cd, yd, 8, &found, perf));
  ASSERT_GT(found, 0);
  std::size_t ws = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, perf[0].algo, &ws));
  DeviceBuffer dx(x.size() * 4), dw(w.size() * 4), dy(ref.size() * 4), dws(ws);
  dx.upload(x.data(), x.size() * 4);
  dw.upload(w.data(), w.size() * 4);
  dy.fill_bytes(0xFF);
  const float alpha = 1.f, beta = 0.f;
  CUDNN_CHECK(cudnnConvolutionForward(h, &alpha, xd, dx.data(), wd, dw.data(), cd, perf[0].algo, dws.data(),
                                      ws, &beta, yd, dy.data()));
  std::vector<float> got(ref.size());
  dy.download(got.data(), got.size() * 4);
  const double err = rel_error(got, ref);
  std::printf("cuDNN conv fwd (algo %d) rel error %.3g\n", int(perf[0].algo), err);
  EXPECT_LT(err, 1e-5);
}

}  // namespace
}  // namespace incept

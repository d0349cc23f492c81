// Foundation pieces that run without a GPU: error reporting of every library check,
// move-only owners, the progress line, GPU-list parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/log.h"
#include "engine/owners.h"
#include "kernels/device_facts.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_tf32x3_gpu.h"
#include "testing/test_util.h"

namespace incept {
namespace {

std::string message_of(auto&& fn) {
  try {
    fn();
  } catch (const CudaError& e) {
    return e.what();
  }
  return "";
}

TEST(Check, CudaErrorNamesExpressionFileLineAndText) {
  const std::string msg = message_of([] { CUDA_CHECK(cudaErrorInvalidValue); });
  EXPECT_NE(msg.find("CUDA error"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cudaErrorInvalidValue"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid argument"), std::string::npos) << msg;
  EXPECT_NE(msg.find("test_engine_basics.cpp:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(device "), std::string::npos) << msg;
}

TEST(Check, EveryLibraryReportsItsOwnText) {
  EXPECT_NE(
      message_of([] { CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM); }).find("cuDNN error: CUDNN_STATUS_BAD_PARAM"),
      std::string::npos);
  EXPECT_NE(message_of([] {
              CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
            }).find("cuBLAS error: CUBLAS_STATUS_INVALID_VALUE"),
            std::string::npos);
  const std::string nccl = message_of([] { NCCL_CHECK(ncclInvalidArgument); });
  EXPECT_NE(nccl.find("NCCL error"), std::string::npos) << nccl;
  EXPECT_NE(nccl.find("ncclInvalidArgument"), std::string::npos) << nccl;
  // Successful calls do not throw.
  EXPECT_NO_THROW(CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  EXPECT_NO_THROW(CUDA_CHECK(cudaSuccess));
}

int g_destroyed = 0;
int fake_destroy(int) {
  return ++g_destroyed;
}

TEST(Owners, MoveOnlyHandleDestroysExactlyOnce) {
  using H = UniqueHandle<int, fake_destroy>;
  static_assert(!std::is_copy_constructible_v<H>);
  static_assert(std::is_nothrow_move_constructible_v<H>);
  g_destroyed = 0;
  {
    H a(7);
    H b(std::move(a));
    EXPECT_FALSE(a);
    EXPECT_EQ(b.get(), 7);
    H c;
    c = std::move(b);
    EXPECT_EQ(c.get(), 7);
    EXPECT_EQ(g_destroyed, 0);
    c = H(9);  // the old handle goes first
    EXPECT_EQ(g_destroyed, 1);
  }
  EXPECT_EQ(g_destroyed, 2);
}

TEST(Owners, EmptyBuffersNeedNoDevice) {
  DeviceBuffer d;
  EXPECT_EQ(d.data(), nullptr);
  DeviceBuffer moved(std::move(d));
  EXPECT_EQ(moved.bytes(), 0u);
  PinnedBuffer p;
  EXPECT_EQ(p.span<float>().size(), 0u);
}

TEST(Progress, LineShowsCountPercentRateAndEta) {
  Progress p("ingest", 1000, /*interval_s=*/3600);
  p.update(250, "failures 2");
  const std::string line = p.line("failures 2");
  EXPECT_NE(line.find("ingest: 250/1000 (25.0%)"), std::string::npos) << line;
  EXPECT_NE(line.find("/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  EXPECT_NE(line.find("failures 2"), std::string::npos) << line;
  EXPECT_GT(p.rate(), 0.0);
}

TEST(Progress, DurationsReadLikeAClock) {
  EXPECT_EQ(format_duration(5), "5s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3 * 3600 + 120), "3h02m");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(Device, GpuListParsingGivesClearErrors) {
  EXPECT_TRUE(parse_gpu_list("none").empty());
  try {
    parse_gpu_list("x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'x' is not a GPU index"), std::string::npos) << e.what();
  }
  const int n = gpu_count();
  try {
    parse_gpu_list(std::to_string(n));  // one past the last GPU
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(m.find("does not exist") != std::string::npos || m.find("--gpus none") != std::string::npos)
        << m;
  }
  if (n == 0) {
    EXPECT_FALSE(no_gpu_reason().empty());
  }
}

// INCEPT_CC_LIMIT's spellings: what a user types for a P100 (60, 6.0, sm_60) and for newer cards.
TEST(Device, ComputeCapabilityLimitParsesEverySpellingAndRefusesTheRest) {
  EXPECT_EQ(kernels::parse_compute_capability("60"), 60);
  EXPECT_EQ(kernels::parse_compute_capability("6.0"), 60);
  EXPECT_EQ(kernels::parse_compute_capability("sm_61"), 61);
  EXPECT_EQ(kernels::parse_compute_capability("7.5"), 75);
  EXPECT_EQ(kernels::parse_compute_capability("sm_90"), 90);
  EXPECT_EQ(kernels::parse_compute_capability("120"), 120);
  EXPECT_EQ(kernels::parse_compute_capability("10.0"), 100);
  EXPECT_EQ(kernels::parse_compute_capability("sm_100"), 100);
  for (const char* bad :
       {"", "6", "6.", ".0", "sm_", "sixty", "6.0.1", "06", "-60", "6,0", "1234", "6.10", "100.0", "sm_6x"})
    EXPECT_EQ(kernels::parse_compute_capability(bad), -1) << "'" << bad << "'";
  EXPECT_EQ(kernels::parse_compute_capability(nullptr), -1);
}

TEST(Elementwise, AxpbyReference) {
  std::vector<float> x{1, 2, 3}, y{10, 20, 30};
  kernels::axpby_ref(3, 2.f, x.data(), 0.5f, y.data());
  EXPECT_FLOAT_EQ(y[0], 7.f);
  EXPECT_FLOAT_EQ(y[2], 21.f);
}

// The 3xTF32 GEMM's CPU reference (what the GPU kernel is checked against): with operands that
// TF32 holds exactly the split is exact and the result is the plain product; with full fp32
// operands it stays within fp32-level error of the exact product but is not exact (the small
// parts are truncated to TF32 and As Bs is dropped); bias and ReLU apply per row.
TEST(Tf32x3Reference, SplitsLikeTheTensorCoresAndKeepsFp32Accuracy) {
  kernels::GemmProblem p;
  p.trans_a = true, p.m = 5, p.n = 7, p.k = 300, p.lda = 300, p.ldb = 300, p.ldc = 5;
  const auto a = testing::random_floats(std::size_t(p.m) * p.k, 41),
             b = testing::random_floats(std::size_t(p.n) * p.k, 42);
  auto exact = [&](const std::vector<float>& x, const std::vector<float>& y) {
    std::vector<double> c(std::size_t(p.m) * p.n, 0.0);
    for (int j = 0; j < p.n; ++j)
      for (int i = 0; i < p.m; ++i)
        for (int l = 0; l < p.k; ++l) c[j * p.m + i] += double(x[i * p.k + l]) * y[j * p.k + l];
    return c;
  };
  auto tf32 = [](std::vector<float> v) {  // keep 10 mantissa bits: exact in TF32
    for (float& x : v) {
      std::uint32_t u;
      std::memcpy(&u, &x, 4);
      u &= 0xFFFFE000u;
      std::memcpy(&x, &u, 4);
    }
    return v;
  };
  const auto at = tf32(a), bt = tf32(b);
  std::vector<double> c(std::size_t(p.m) * p.n);
  kernels::gemm_tf32x3_ref(p, at.data(), bt.data(), c.data());
  EXPECT_EQ(c, exact(at, bt));

  kernels::gemm_tf32x3_ref(p, a.data(), b.data(), c.data());
  const auto e = exact(a, b);
  double num = 0, den = 0;
  for (std::size_t i = 0; i < c.size(); ++i) num += (c[i] - e[i]) * (c[i] - e[i]), den += e[i] * e[i];
  const double rel = std::sqrt(num / den);
  EXPECT_GT(rel, 0.0);
  EXPECT_LT(rel, 1e-6);  // TF32 alone would be ~3e-4

  const std::vector<float> bias{1.f, -100.f, 0.f, 2.f, 100.f};
  p.bias = bias.data();
  p.relu = true;
  kernels::gemm_tf32x3_ref(p, at.data(), bt.data(), c.data());
  const auto e2 = exact(at, bt);
  for (int j = 0; j < p.n; ++j)
    for (int i = 0; i < p.m; ++i) EXPECT_EQ(c[j * p.m + i], std::max(e2[j * p.m + i] + bias[i], 0.0));
}

}  // namespace
}  // namespace incept

// The paths of GPUs older than the one at hand, run on it: this program sets INCEPT_CC_LIMIT=60
// before anything reads the device, so every choice incept takes by compute capability is the
// one it takes on a P100 (DIGITS' two-GPU setting): fp32, NCHW, cuBLAS's FMA GEMMs, no
// tensor-core or cp.async kernel. The kernels themselves are those built for the card (a
// CUDA 12 build for sm_60 is checked by tools/check_cuda12.sh); cuDNN and cuBLAS still choose
// their own kernels for the real GPU. On a real P100 the limit changes nothing and the same
// checks hold.
#include <gtest/gtest.h>

#include <cstdlib>

#include "engine/device.h"
#include "engine/gpu_net.h"
#include "engine/trainer.h"
#include "kernels/conv_few_channels_gpu.h"
#include "kernels/device_facts.h"
#include "kernels/gemm_tf32x3_gpu.h"
#include "testing/gpu_job.h"
#include "testing/test_util.h"

namespace incept {
namespace {

// Before main(): the limit is read once, on the first query.
const bool kLimitSet = setenv("INCEPT_CC_LIMIT", "60", 1) == 0;

TEST(OldCards, EveryCapabilityChoiceTakesTheLimit) {
  INCEPT_REQUIRE_GPU();
  ASSERT_TRUE(kLimitSet);
  ASSERT_EQ(kernels::compute_capability_limit(), 60);
  const int hw = kernels::hardware_compute_capability(0);
  std::printf("GPU 0: %s; hardware sm_%d\n", describe_gpu(0).c_str(), hw);
  ASSERT_GE(hw, 60) << "CUDA 12 builds start at sm_60";
  EXPECT_EQ(kernels::compute_capability(0), 60);
  EXPECT_EQ(kernels::compute_capability(), 60);
  EXPECT_EQ(list_gpus()[0].cc_major, 6);
  EXPECT_EQ(list_gpus()[0].cc_minor, 0);
  if (hw > 60) {
    EXPECT_NE(describe_gpu(0).find("taken as sm_60 (INCEPT_CC_LIMIT)"), std::string::npos);
  }

  const GpuNetOptions o = recommended_options(0);
  EXPECT_EQ(o.dtype, kernels::DType::kF32) << "a P100 trains in fp32";
  EXPECT_FALSE(o.channels_last) << "a P100 has no tensor cores for channels-last to feed";
  EXPECT_FALSE(o.tf32x3) << "a P100 has no TF32";

  // The tensor-core kernels refuse problems they take on the real card.
  kernels::GemmProblem p;
  p.m = p.n = p.k = 256;
  p.lda = p.ldb = p.ldc = 256;
  DeviceBuffer a(3 * 256 * 256 * sizeof(float));
  p.a = a.as<float>(), p.b = a.as<float>() + 256 * 256, p.c = a.as<float>() + 2 * 256 * 256;
  EXPECT_FALSE(kernels::tf32x3_supported(p));
  ConvGeom g;
  g.num_output = 64, g.kernel_h = g.kernel_w = 7, g.stride_h = g.stride_w = 2, g.pad_h = g.pad_w = 3;
  EXPECT_FALSE(kernels::conv_few_channels_supported(Nchw{2, 3, 224, 224}, g, Nchw{2, 64, 112, 112}));
}

using OldCardsJob = testing::GpuJobTest;

// DIGITS' job with every default, as on a P100: it picks fp32, NCHW and FMA GEMMs by itself,
// says so in its log, and its first SGD step follows the CPU reference's.
TEST_F(OldCardsJob, TheDefaultJobTakesTheP100PathAndFollowsTheCpu) {
  const double err = one_step_error("auto");
  std::printf("GoogLeNet, one SGD step on the P100 path vs the CPU reference: weight change rel error %.3g\n",
              err);
  EXPECT_LT(err, 1e-3);
  const std::string log = testing::read_file(tmp_ / "g1" / "train.log");
  EXPECT_NE(log.find("fp32 (strict GEMMs) NCHW"), std::string::npos) << log;
  if (kernels::hardware_compute_capability(0) > 60) {
    EXPECT_NE(log.find("taken as sm_60"), std::string::npos) << log;
  }

  // Ten steps and a validation complete with a finite loss that the CPU's run is near.
  const TrainResult gpu = train_job(config("gpu", "auto", true));
  ASSERT_TRUE(gpu.finished);
  const TrainResult cpu = train_job(config("cpu", "fp32", false));
  ASSERT_TRUE(cpu.finished);
  std::printf("10 SGD steps: val loss %.6f (P100 path) vs %.6f (CPU)\n",
              testing::metric(gpu.final_val, "loss"), testing::metric(cpu.final_val, "loss"));
  EXPECT_NEAR(testing::metric(gpu.final_val, "loss"), testing::metric(cpu.final_val, "loss"),
              1e-2 * testing::metric(cpu.final_val, "loss"));
}

// What a P100 cannot do is refused before training, with the way out in the message.
TEST_F(OldCardsJob, Bf16AndThe3xTf32KernelAreRefusedWithTheWayOut) {
  TrainConfig c = config("bf16", "bf16", true);
  try {
    train_job(c);
    FAIL() << "bf16 was accepted on a GPU taken as sm_60";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no bf16 tensor cores: use --precision fp32"), std::string::npos)
        << e.what();
  }
  c = config("3xtf32", "fp32", true);
  c.fp32_math = "3xtf32";
  try {
    train_job(c);
    FAIL() << "--fp32-math 3xtf32 was accepted on a GPU taken as sm_60";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no TF32 tensor cores for --fp32-math 3xtf32: use auto or strict"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace incept

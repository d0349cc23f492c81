// The training job on a GPU against the CPU reference, on real Fashion-MNIST records ingested
// with DIGITS' defaults (256x256 colour JPEG) and DIGITS' GoogLeNet: the same trainer code with
// the GPU backend (loader -> pinned batch -> async copy -> transform kernel -> the step's CUDA
// graph -> SGD on the shared parameter store) follows the CPU run's weights and losses in fp32;
// graph and eager runs give the same bits; a stopped and resumed job gives the uninterrupted
// job's bits (also with --fp32-math strict); bf16 stays close to fp32.
#include <gtest/gtest.h>

#include "engine/caffe_model.h"
#include "engine/trainer.h"
#include "testing/gpu_job.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using GpuTrainerTest = testing::GpuJobTest;

TEST_F(GpuTrainerTest, Fp32FollowsTheCpuReference) {
  const double step_err = one_step_error("fp32");
  std::printf("GoogLeNet, one SGD step, GPU fp32 vs CPU fp32: weight change rel error %.3g\n", step_err);
  EXPECT_LT(step_err, 1e-3);

  // Ten steps and a validation: the runs stay together. Small differences grow through ReLUs
  // and max pools, most in the auxiliary heads (dropout 0.7, an initial loss near 7.5), so the
  // bounds are looser than one step's; the one-step check above is the strict one.
  const TrainResult cpu = train_job(config("cpu", "fp32", false));
  const TrainResult gpu = train_job(config("gpu", "fp32", true));
  ASSERT_TRUE(cpu.finished && gpu.finished);
  const double err = testing::rel_error(testing::caffemodel_weights(gpu.last_snapshot),
                                        testing::caffemodel_weights(cpu.last_snapshot));
  std::printf(
      "GoogLeNet, 10 SGD steps, GPU fp32 vs CPU fp32: weights rel error %.3g, val loss %.6f vs %.6f\n", err,
      testing::metric(gpu.final_val, "loss"), testing::metric(cpu.final_val, "loss"));
  EXPECT_LT(err, 2e-2);
  EXPECT_NEAR(testing::metric(gpu.final_val, "loss"), testing::metric(cpu.final_val, "loss"),
              1e-2 * testing::metric(cpu.final_val, "loss"));
  // The auxiliary heads' losses are printed, not bounded: on 10 validation images after 10 steps
  // they were seen 4 % apart between GPU and CPU, and the CPU reference itself moves with the
  // machine's core count (OpenBLAS splits its sums by thread).
  std::printf("aux losses after 10 steps, GPU vs CPU: loss1 %.4f vs %.4f, loss2 %.4f vs %.4f\n",
              testing::metric(gpu.final_val, "loss1/loss"), testing::metric(cpu.final_val, "loss1/loss"),
              testing::metric(gpu.final_val, "loss2/loss"), testing::metric(cpu.final_val, "loss2/loss"));
}

TEST_F(GpuTrainerTest, GraphEqualsEagerAndResumeIsBitwise) {
  const TrainResult a = train_job(config("graph", "fp32", true));
  TrainConfig e = config("eager", "fp32", true);
  e.graph = false;
  const TrainResult b = train_job(e);
  ASSERT_TRUE(a.finished && b.finished);
  EXPECT_EQ(testing::read_file(a.last_snapshot), testing::read_file(b.last_snapshot))
      << "graph and eager steps differ";

  const TrainResult c = testing::stop_and_resume(config("resumed", "fp32", true), 3);
  ASSERT_TRUE(c.finished);
  EXPECT_EQ(testing::read_file(a.last_snapshot), testing::read_file(c.last_snapshot))
      << "the resumed job differs";
}

// fp32 with FMA arithmetic only (--fp32-math strict: cuBLAS GEMMs, the 3x3 layers as Winograd
// F(2x2, 3x3), as its log says): one step against the CPU's at the same bar as the default, and
// a stopped and resumed job gives the uninterrupted job's bits.
TEST_F(GpuTrainerTest, Fp32StrictFollowsTheCpuReferenceAndResumesBitwise) {
  const double step_err = one_step_error("fp32", "strict");
  std::printf("GoogLeNet, one SGD step, GPU fp32 strict vs CPU fp32: weight change rel error %.3g\n",
              step_err);
  EXPECT_LT(step_err, 1e-3);
  const std::string log = testing::read_file(tmp_ / "g1" / "train.log");
  EXPECT_NE(log.find("fp32 (strict GEMMs) channels-last, 10 3x3 layers as Winograd F(2x2,3x3)"),
            std::string::npos)
      << log;
  TrainConfig a = config("strict", "fp32", true);
  a.fp32_math = "strict";
  const TrainResult full = train_job(a);
  a.job_dir = config("strict_resumed", "fp32", true).job_dir;
  const TrainResult resumed = testing::stop_and_resume(a, 3);
  ASSERT_TRUE(full.finished && resumed.finished);
  EXPECT_EQ(testing::read_file(full.last_snapshot), testing::read_file(resumed.last_snapshot))
      << "the resumed strict job differs";
}

TEST_F(GpuTrainerTest, Bf16StaysCloseToFp32) {
  if (list_gpus()[0].cc_major < 8) GTEST_SKIP() << "no bf16 on this GPU";
  const TrainResult f = train_job(config("f", "fp32", true));
  const TrainResult h = train_job(config("h", "bf16", true));
  ASSERT_TRUE(f.finished && h.finished);
  const double err = testing::rel_error(testing::caffemodel_weights(h.last_snapshot),
                                        testing::caffemodel_weights(f.last_snapshot));
  std::printf("bf16 vs fp32 after 10 steps: weights rel error %.3g, val loss %.4f vs %.4f\n", err,
              testing::metric(h.final_val, "loss"), testing::metric(f.final_val, "loss"));
  EXPECT_LT(err, 2e-2);
  EXPECT_NEAR(testing::metric(h.final_val, "loss"), testing::metric(f.final_val, "loss"),
              0.05 * testing::metric(f.final_val, "loss"));
}

TEST_F(GpuTrainerTest, ABatchTooLargeForTheGpuIsAClearError) {
  TrainConfig c = config("huge", "fp32", true);
  c.form.batch_size = 1 << 16;  // ~1.5 TB of fp32 activations
  try {
    train_job(c);
    ADD_FAILURE() << "a batch of 65536 GoogLeNet images fit on the GPU";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("does not fit in the memory of GPU 0"), std::string::npos) << m;
    EXPECT_NE(m.find("--batch-size"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace incept

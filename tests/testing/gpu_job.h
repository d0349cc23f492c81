// The training job on a GPU against the CPU reference, on real Fashion-MNIST records ingested
// with DIGITS' defaults (256x256 colour JPEG, 6 a class: 45 train / 15 val) and DIGITS'
// GoogLeNet: the fixture that test_gpu_trainer and test_gpu_old_cards share. The records are
// ingested once per suite; every test gets its own job folders.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "data/idx.h"
#include "engine/trainer.h"
#include "testing/test_util.h"

namespace incept::testing {

// Runs `job` until it stops after `stop_at` iterations (as Ctrl-C would), then resumes it from
// its folder to the end: the resumed run's result (what --resume must make bitwise equal to the
// uninterrupted job's).
inline TrainResult stop_and_resume(TrainConfig job, int stop_at) {
  job.stop_at = stop_at;
  EXPECT_TRUE(train_job(job).interrupted);
  TrainConfig r;
  r.job_dir = job.job_dir;
  r.resume = true;
  return train_job(r);
}

class GpuJobTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (gpu_count() == 0 || !std::filesystem::exists(data::fashion_mnist_dir())) return;
    root_ = new TempDir("incept_gpu_job_records");
    ingest_fashion_mnist(root_->path(), 6);
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    INCEPT_REQUIRE_GPU();
    ASSERT_TRUE(root_) << "Debian's dataset-fashion-mnist (or $INCEPT_FASHION_MNIST_DIR) is needed";
  }
  // Job `name` in this test's folder: batch 9 (5 iterations an epoch), 2 epochs, seed 11,
  // deterministic; on GPU 0 or on the CPU reference.
  TrainConfig config(const std::string& name, const std::string& precision, bool gpu) const {
    TrainConfig c;
    c.dataset_dir = (root_->path() / "ds").string();
    c.job_dir = (tmp_ / name).string();
    c.form.batch_size = 9;
    c.form.epochs = 2;
    c.seed = 11;
    c.precision = precision;
    c.deterministic = true;
    if (gpu) c.gpus = {0};
    return c;
  }
  // One SGD step of `precision` (and the GPU's --fp32-math) on GPU 0 against the CPU's (fp32
  // rounding apart, the same batch, crops, mirrors, dropout masks, loss and update): the relative
  // error of the GPU's weight change. lr 0 gives the initial weights. The GPU's job is "g1".
  double one_step_error(const std::string& precision, const std::string& fp32_math = "auto") {
    auto one_step = [&](const std::string& name, const std::string& p, bool gpu, double lr) {
      TrainConfig c = config(name, p, gpu);
      if (gpu) c.fp32_math = fp32_math;
      c.max_iter = 1;
      c.form.base_lr = lr;
      const TrainResult r = train_job(c);
      EXPECT_TRUE(r.finished);
      return caffemodel_weights(r.last_snapshot);
    };
    const auto w0 = one_step("w0", "fp32", false, 0.0), wc = one_step("c1", "fp32", false, 0.01),
               wg = one_step("g1", precision, true, 0.01);
    EXPECT_EQ(w0.size(), wg.size());
    if (w0.size() != wg.size() || w0.size() != wc.size()) return 1.0;
    std::vector<float> dc(w0.size()), dg(w0.size());
    for (std::size_t i = 0; i < w0.size(); ++i) dc[i] = wc[i] - w0[i], dg[i] = wg[i] - w0[i];
    return rel_error(dg, dc);
  }

  static inline TempDir* root_ = nullptr;
  TempDir tmp_{"incept_gpu_job"};
};

}  // namespace incept::testing

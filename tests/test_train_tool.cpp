// The train_googlenet program as a user runs it, on the CPU reference (--gpus none) with
// DIGITS' GoogLeNet on a tiny real dataset (Fashion-MNIST ingested with DIGITS' defaults:
// 256x256 colour JPEG records): --help documents every option, a short job finishes with its
// summary, Ctrl-C finishes the step, writes a snapshot and exits 0, --resume completes the
// job, and wrong flags get clear messages.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "data/idx.h"
#include "data/ingest.h"
#include "engine/snapshot.h"
#include "testing/http_server.h"
#include "testing/test_util.h"

namespace fs = std::filesystem;
using incept::testing::run_command;
using incept::testing::TempDir;

namespace incept {
namespace {

const std::string kTool = testing::test_program("train_googlenet");

class TrainToolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(data::fashion_mnist_dir())) return;
    root_ = new TempDir("incept_train_tool");
    data::write_fashion_mnist_folder((root_->path() / "images").string(), 4);
    data::IngestOptions o;  // DIGITS' defaults: 256x256 colour, 25 % validation
    o.source = (root_->path() / "images").string();
    o.output_dir = (root_->path() / "ds").string();
    o.threads = 2;
    o.progress_interval_s = 100;
    data::run_ingest(o);  // 30 train / 10 val records
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    if (!root_) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  }
  static std::string dataset() { return (root_->path() / "ds").string(); }
  static TempDir* root_;
  TempDir tmp_{"incept_train_job"};
};
TempDir* TrainToolTest::root_ = nullptr;

TEST(TrainTool, HelpListsEveryOptionWithItsDefault) {
  std::string out;
  ASSERT_EQ(run_command(kTool + " --help", &out), 0) << out;
  for (const char* opt : {"--dataset",
                          "--output",
                          "--gpus",
                          "--epochs",
                          "--batch-size",
                          "--base-lr",
                          "--lr-policy",
                          "--step-size",
                          "--gamma",
                          "--power",
                          "--max-iter",
                          "--val-interval",
                          "--snapshot-interval",
                          "--precision",
                          "--seed",
                          "--deterministic",
                          "--round-grads-bf16",
                          "--keep-im2col",
                          "--resume",
                          "--mean",
                          "--crop-size",
                          "--weights",
                          "--blob-format",
                          "--stop-after"})
    EXPECT_NE(out.find(opt), std::string::npos) << opt;
  for (const char* dflt : {"=30", "=128", "=0.01", "=step", "=33", "=1", "=auto", "=image"})
    EXPECT_NE(out.find(dflt), std::string::npos) << dflt;
}

TEST(TrainTool, WrongFlagsGetClearMessages) {
  std::string out;
  EXPECT_NE(run_command(kTool + " --output /tmp/x --epochs", &out), 0);
  EXPECT_EQ(run_command(kTool + " --dataset /nonexistent --output /tmp/incept_x --gpus none", &out), 1);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
  EXPECT_EQ(run_command(kTool + " --dataset /tmp --output /tmp/incept_x --lr-policy fast --gpus none", &out),
            1);
  EXPECT_NE(out.find("learning-rate policy"), std::string::npos) << out;
  // Out-of-range values are refused by name before anything runs, not taken as a default: a
  // negative batch used to train at the network's 32, a negative learning rate uphill.
  for (const auto& [flags, says] : std::vector<std::pair<std::string, std::string>>{
           {"--batch-size -5", "--batch-size: must be at least 0; got -5"},
           {"--base-lr -0.01", "--base-lr: must be at least 0; got -0.01"},
           {"--epochs 0", "--epochs: must be above 0; got 0"},
           {"--gamma -2", "--gamma: must be at least 0, or -1 for DIGITS' default; got -2"},
           {"--val-interval -1", "--val-interval: must be at least 0; got -1"},
           {"--stop-after -2", "--stop-after: must be at least -1; got -2"},
           {"--step-size 0", "--step-size: 0 is not above 0"},
           {"--lr-policy multistep --step-size 85,50",
            "the multistep percents must increase, e.g. 50,85; got 85,50"}}) {
    out.clear();  // run_command appends
    EXPECT_NE(
        run_command(kTool + " --dataset /nonexistent --output /tmp/incept_x --gpus none " + flags, &out), 0)
        << flags;
    EXPECT_NE(out.find(says), std::string::npos) << flags << ": " << out;
    EXPECT_EQ(out.find("does not exist"), std::string::npos) << flags << ": checked after the dataset";
  }
  // -1 stays the documented "DIGITS' default" for --gamma and --power.
  out.clear();
  EXPECT_EQ(
      run_command(kTool + " --dataset /nonexistent --output /tmp/incept_x --gpus none --gamma -1 --power -1",
                  &out),
      1);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
}

TEST_F(TrainToolTest, GoogLeNetOnTheCpuFinishesWithASummary) {
  const fs::path job = tmp_ / "job";
  std::string out;
  ASSERT_EQ(run_command(kTool + " --dataset " + dataset() + " --output " + job.string() +
                            " --gpus none --epochs 2 --batch-size 10 --seed 3 --loader-threads 2",
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("finished: 6 iterations"), std::string::npos) << out;  // ceil(30 / 10) x 2
  EXPECT_NE(out.find("final validation: top-1"), std::string::npos) << out;
  EXPECT_NE(out.find("top-5"), std::string::npos) << out;
  EXPECT_NE(out.find("snapshot_iter_6.caffemodel"), std::string::npos) << out;
  EXPECT_NE(out.find("report.html"), std::string::npos) << out;
  // DIGITS' GoogLeNet snapshot: every learnable layer, aux heads included (~6 M params for 10 classes).
  EXPECT_GT(fs::file_size(job / "snapshot_iter_6.caffemodel"), 20'000'000u);
  const std::string log = testing::read_file(job / "train.log");
  EXPECT_NE(log.find("loss1/loss"), std::string::npos) << log;
  EXPECT_NE(log.find("accuracy-top5"), std::string::npos) << log;
  EXPECT_NE(log.find("ETA"), std::string::npos) << log;
  // A second run into the same folder is refused.
  EXPECT_EQ(
      run_command(kTool + " --dataset " + dataset() + " --output " + job.string() + " --gpus none", &out), 1);
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  // The bf16-gradient experiment is for fp32 on a GPU only; the folder is left alone.
  EXPECT_EQ(run_command(kTool + " --dataset " + dataset() + " --output " + (tmp_ / "job_r").string() +
                            " --gpus none --round-grads-bf16",
                        &out),
            1);
  EXPECT_NE(out.find("--round-grads-bf16 is an experiment for fp32 training on the GPU"), std::string::npos)
      << out;
  EXPECT_FALSE(fs::exists(tmp_ / "job_r" / "job.json"));
  // So is keeping the im2col rows (the CPU has none).
  EXPECT_EQ(run_command(kTool + " --dataset " + dataset() + " --output " + (tmp_ / "job_k").string() +
                            " --gpus none --keep-im2col",
                        &out),
            1);
  EXPECT_NE(out.find("--keep-im2col is a GPU memory/speed choice"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(tmp_ / "job_k" / "job.json"));
  // The 3xTF32 GEMMs are a GPU kernel, and the math names are checked.
  EXPECT_EQ(run_command(kTool + " --dataset " + dataset() + " --output " + (tmp_ / "job_m").string() +
                            " --gpus none --fp32-math 3xtf32",
                        &out),
            1);
  EXPECT_NE(out.find("--fp32-math 3xtf32 is the GPU's fp32 GEMM kernel"), std::string::npos) << out;
  EXPECT_EQ(run_command(kTool + " --dataset " + dataset() + " --output " + (tmp_ / "job_m").string() +
                            " --gpus none --fp32-math fast",
                        &out),
            1);
  EXPECT_NE(out.find("--fp32-math must be auto, strict or 3xtf32, got fast"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(tmp_ / "job_m" / "job.json"));
}

TEST_F(TrainToolTest, CtrlCWritesASnapshotAndResumeFinishes) {
  const fs::path job = tmp_ / "job";
  const std::string log_path = (tmp_ / "run.log").string();
  const int pid = fork();
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(kTool.c_str(), kTool.c_str(), "--dataset", dataset().c_str(), "--output", job.c_str(), "--gpus",
          "none", "--epochs", "4", "--batch-size", "10", "--seed", "5", "--val-interval", "4",
          "--loader-threads", "2", nullptr);
    _exit(127);
  }
  // Wait for the first progress line of training, then press Ctrl-C.
  bool training = false;
  for (int i = 0; i < 1200 && !training; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    training = testing::read_file(log_path).find(" iter ") != std::string::npos;
  }
  ASSERT_TRUE(training) << testing::read_file(log_path);
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << testing::read_file(log_path);
  EXPECT_EQ(WEXITSTATUS(status), 0) << testing::read_file(log_path);
  const std::string log = testing::read_file(log_path);
  EXPECT_NE(log.find("stopped at iteration"), std::string::npos) << log;
  const auto snap = latest_resumable(job);
  ASSERT_TRUE(snap.has_value());
  EXPECT_GT(snap->iter, 0);
  EXPECT_LT(snap->iter, 12);

  std::string out;
  ASSERT_EQ(
      run_command(kTool + " --output " + job.string() + " --resume --gpus none --loader-threads 2", &out), 0)
      << out;
  EXPECT_NE(out.find("finished: 12 iterations"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(job / "snapshot_iter_12.caffemodel"));
}

}  // namespace
}  // namespace incept

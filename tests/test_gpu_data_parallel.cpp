// Data-parallel training on two GPUs of one host, against one GPU:
// - the gradient all-reduce: bf16 gradients are summed in fp32, bitwise the fp32 sum of the two
//   replicas' gradients (and what the bf16 sum would lose is printed);
// - the trainer: one SGD step on two GPUs at global batch B changes the weights as one GPU at
//   batch B does; a short job follows the same validation numbers; a stopped and resumed job
//   on two GPUs gives the uninterrupted job's bits;
// - a replica that stalls (alive, no more steps) ends the job on every GPU with an NCCL timeout
//   error within the step timeout, in one process and in two processes.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "data/idx.h"
#include "data/ingest.h"
#include "engine/caffe_model.h"
#include "engine/check.h"
#include "engine/device.h"
#include "engine/gpu_net.h"
#include "engine/nccl_comm.h"
#include "engine/process_group.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "testing/gpu_job.h"
#include "testing/subprocess.h"
#include "testing/test_util.h"

namespace fs = std::filesystem;
using incept::testing::TempDir;

namespace incept {
namespace {

using kernels::DType;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// ---- the all-reduce of one step's gradients -------------------------------------------------------

// One training step without update on GPUs 0 and 1, each in its own thread (as the trainer runs
// replicas), each on its own half of a batch; with `group`, the gradients are all-reduced inside
// the step. Returns what get_grads() reads on each GPU.
std::array<std::vector<float>, 2> step_grads(NcclGroup* group, bool sum_fp32, DType dtype) {
  constexpr int kBatch = 8, kClasses = 10;
  PlanOptions po;
  po.stage = Stage::kTrain;
  po.batch = kBatch;
  po.num_classes = kClasses;
  const NetPlan plan = plan_net(models::googlenet(), po);
  std::array<std::vector<float>, 2> grads;
  std::array<std::string, 2> errors;
  auto replica = [&](int i) {
    try {
      CUDA_CHECK(cudaSetDevice(i));
      GpuNetOptions o;
      o.dtype = dtype;
      o.deterministic = true;
      o.dropout_seed = 5;
      o.dropout_first_sample = std::uint64_t(i) * kBatch;
      GpuNet net(plan, o);
      net.init_params(42);
      const Nchw in = plan.blobs[plan.data_blob].shape;
      net.set_input(testing::random_floats(std::size_t(in.count()), 100 + i, 0.f, 1.f));
      std::vector<std::int32_t> labels(kBatch);
      for (int k = 0; k < kBatch; ++k) labels[k] = (k * 3 + i) % kClasses;
      CUDA_CHECK(cudaMemcpy(net.labels(), labels.data(), labels.size() * 4, cudaMemcpyHostToDevice));
      if (group) net.set_grad_reduce({group->comm(i), sum_fp32});
      net.train_step(StepValues{.iteration = 0, .lr = 0.01f, .momentum = 0.9f, .weight_decay = 1e-4f},
                     /*graph=*/false, /*update=*/false);
      CUDA_CHECK(cudaStreamSynchronize(net.stream()));
      grads[i].resize(plan.param_elems);
      net.get_grads(grads[i]);
    } catch (const std::exception& e) {
      errors[i] = e.what();
      if (group) group->abort(e.what());
    }
  };
  std::thread t0(replica, 0), t1(replica, 1);
  t0.join();
  t1.join();
  for (const std::string& e : errors)
    if (!e.empty()) throw Error(e);
  return grads;
}

TEST(DataParallel, GradientsAreSummedInFp32) {
  INCEPT_REQUIRE_GPUS(2);
  auto pg = make_single_process_group();
  NcclGroup group(*pg, {0, 1}, 120);
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    const char* name = kernels::dtype_name(dtype);
    // Each replica's own gradients (no all-reduce), then the all-reduced ones.
    const auto own = step_grads(nullptr, true, dtype);
    const auto summed = step_grads(&group, true, dtype);
    std::size_t n = own[0].size(), mismatches = 0, nonzero = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const float want = own[0][k] + own[1][k];  // two values in fp32: what NCCL's fp32 sum gives
      nonzero += want != 0.f;
      for (int r = 0; r < 2; ++r) mismatches += std::memcmp(&summed[r][k], &want, 4) != 0;
    }
    std::printf("%s: %zu of %zu gradient sums differ from the fp32 sum of the replicas' gradients\n", name,
                mismatches, 2 * n);
    EXPECT_EQ(mismatches, 0u) << name;
    EXPECT_GT(nonzero, n / 2) << name << ": the step left most gradients zero";
    if (dtype == DType::kF32) continue;

    // The bf16 sum (--grad-allreduce bf16): one bf16 rounding of the fp32 sum, at most one ulp.
    const auto rounded = step_grads(&group, false, dtype);
    std::size_t off = 0, far = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const float exact = own[0][k] + own[1][k];
      const float ulp = std::ldexp(1.f, std::ilogb(exact == 0.f ? 1e-30f : exact) - 7);
      off += rounded[0][k] != exact;
      far += std::fabs(rounded[0][k] - exact) > ulp;
    }
    const double err = testing::rel_error(rounded[0], summed[0]);
    std::printf("bf16 sum instead: %zu of %zu sums rounded, relative error %.3g against the fp32 sum\n", off,
                n, err);
    EXPECT_EQ(far, 0u) << "a bf16 sum more than one ulp from the fp32 sum";
    EXPECT_LT(err, 4e-3);
  }
}

// ---- the trainer on one and two GPUs -----------------------------------------------------------------

// The main validation loss of every validation in a job's metrics.csv, in order.
std::vector<double> val_losses(const std::string& job) {
  std::istringstream in(testing::read_file(fs::path(job) / "metrics.csv"));
  std::string line;
  std::getline(in, line);
  auto split = [](const std::string& l) {
    std::vector<std::string> v;
    std::stringstream ss(l);
    for (std::string f; std::getline(ss, f, ',');) v.push_back(f);
    return v;
  };
  const auto head = split(line);
  const auto col = [&](const std::string& name) {
    return std::size_t(std::find(head.begin(), head.end(), name) - head.begin());
  };
  const std::size_t phase = col("phase"), loss = col("loss");
  std::vector<double> out;
  while (std::getline(in, line)) {
    const auto f = split(line);
    if (phase < f.size() && loss < f.size() && f[phase] == "val") out.push_back(std::stod(f[loss]));
  }
  return out;
}

class TwoGpuTrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (gpu_count() < 2 || !fs::exists(data::fashion_mnist_dir())) return;
    root_ = new TempDir("incept_gpu_dp");
    testing::ingest_fashion_mnist(root_->path(),
                                  40);  // 300 train / 100 val records, 256x256 colour (DIGITS' defaults)
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    INCEPT_REQUIRE_GPUS(2);
    ASSERT_TRUE(root_) << "Debian's dataset-fashion-mnist (or $INCEPT_FASHION_MNIST_DIR) is needed";
  }
  TrainConfig config(const std::string& name, std::vector<int> gpus) const {
    TrainConfig c;
    c.dataset_dir = (root_->path() / "ds").string();
    c.job_dir = (tmp_ / name).string();
    c.form.batch_size = 32;  // global: 16 per GPU on two
    c.form.epochs = 2;
    c.seed = 7;
    c.precision = "fp32";
    c.deterministic = true;
    c.gpus = std::move(gpus);
    return c;
  }
  static TempDir* root_;
  TempDir tmp_{"incept_gpu_dp_job"};
};
TempDir* TwoGpuTrainerTest::root_ = nullptr;

TEST_F(TwoGpuTrainerTest, TwoGpusFollowOneGpuAtTheSameGlobalBatch) {
  // One SGD step: the weight change on two GPUs (16 images each, gradients summed, scaled by
  // 1/2) against one GPU with all 32 (fp32; the same crops, mirrors and dropout masks, which
  // are keyed by the example's place in the global batch).
  auto one_step = [&](const std::string& name, std::vector<int> gpus, double lr) {
    TrainConfig c = config(name, std::move(gpus));
    c.max_iter = 1;
    c.form.base_lr = lr;
    const TrainResult r = train_job(c);
    EXPECT_TRUE(r.finished);
    return testing::caffemodel_weights(r.last_snapshot);
  };
  const auto w0 = one_step("w0", {0}, 0.0), w1 = one_step("one", {0}, 0.01),
             w2 = one_step("two", {0, 1}, 0.01);
  ASSERT_EQ(w0.size(), w2.size());
  std::vector<float> d1(w0.size()), d2(w0.size());
  for (std::size_t i = 0; i < w0.size(); ++i) d1[i] = w1[i] - w0[i], d2[i] = w2[i] - w0[i];
  const double step_err = testing::rel_error(d2, d1);
  std::printf("one SGD step at global batch 32, 2 GPUs vs 1 GPU (fp32): weight change rel error %.3g\n",
              step_err);
  EXPECT_LT(step_err, 1e-3);

  // 200 steps (20 epochs, DIGITS' step policy, a validation each epoch) both ways: the same
  // validation curve. Rounding differences grow through ReLUs and max pools over so many steps
  // on 300 images, so the bounds are looser than one step's: on an H200 the final val loss was
  // 1.694 (2 GPUs) vs 1.787 (1 GPU), 5.2 % apart, top-1 41 % both (2026-11-30); in a later run
  // 1.696 vs 1.676, top-1 41 % vs 53 % (after LRN backward's division changed by ~2 ulp: a
  // change of rounding that small moves each curve that far). Top-1 over 100 images near 45 %
  // has a standard deviation of 5 points per run, 7 for the difference of two runs: its bound
  // is 2 of those (15 points), far below what a wrong gradient scale or a replica left out of
  // the sum does to it; the loss bound is the tighter check.
  TrainConfig c1 = config("job1", {0}), c2 = config("job2", {0, 1});
  c1.form.epochs = c2.form.epochs = 20;
  c1.form.snapshot_interval = c2.form.snapshot_interval = 100;
  const TrainResult a = train_job(c1);
  const TrainResult b = train_job(c2);
  ASSERT_TRUE(a.finished && b.finished);
  const auto va = val_losses(c1.job_dir), vb = val_losses(c2.job_dir);
  ASSERT_EQ(va.size(), 21u);
  ASSERT_EQ(vb.size(), va.size());
  double worst = 0;
  for (std::size_t i = 0; i < va.size(); ++i) worst = std::max(worst, std::fabs(va[i] - vb[i]) / va[i]);
  std::printf(
      "200 steps, 2 GPUs vs 1 GPU: val loss %.4f -> %.4f vs %.4f -> %.4f (largest difference on the curve "
      "%.3g), top-1 %.2f vs %.2f\n",
      vb.front(), vb.back(), va.front(), va.back(), worst, testing::metric(b.final_val, "accuracy"),
      testing::metric(a.final_val, "accuracy"));
  EXPECT_LT(va.back(), 0.8 * va.front()) << "the job did not learn: the comparison would say little";
  EXPECT_NEAR(vb.back(), va.back(), 0.1 * va.back());
  EXPECT_NEAR(testing::metric(b.final_val, "accuracy"), testing::metric(a.final_val, "accuracy"), 0.15);
}

TEST_F(TwoGpuTrainerTest, ResumeOnTwoGpusIsBitwise) {
  const TrainResult a = train_job(config("whole", {0, 1}));
  const TrainResult c = testing::stop_and_resume(config("resumed", {0, 1}), 5);
  ASSERT_TRUE(a.finished && c.finished);
  EXPECT_EQ(testing::read_file(a.last_snapshot), testing::read_file(c.last_snapshot))
      << "the job resumed on two GPUs differs from the uninterrupted one";
}

TEST_F(TwoGpuTrainerTest, AStalledReplicaEndsTheJobWithinTheStepTimeout) {
  TrainConfig c = config("stall", {0, 1});
  c.form.epochs = 30;
  c.dist.step_timeout_s = 3;
  ::setenv("INCEPT_FAULT_STALL", "1:4", 1);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string m = testing::error_of([&] { train_job(c); });
  ::unsetenv("INCEPT_FAULT_STALL");
  const double s = seconds_since(t0);
  std::printf("stalled replica: the job ended after %.1f s: %s\n", s, m.c_str());
  EXPECT_NE(m.find("timed out after 3.0 s"), std::string::npos) << m;
  EXPECT_LT(s, 60.0);
}

// Two processes of train_googlenet, one GPU each, meeting through a file rendezvous; rank 1
// stalls (INCEPT_FAULT_STALL) or is killed. Both ranks must end, with an error, soon.
struct TwoProcessTraining {
  TempDir dir{"incept_dp_procs"};
  std::vector<testing::Subprocess> procs;
  TwoProcessTraining(const fs::path& ds, const std::map<std::string, std::string>& env) {
    for (int r = 0; r < 2; ++r)
      procs.emplace_back(std::vector<std::string>{testing::test_program("train_googlenet"),
                                                  "--dataset",
                                                  ds.string(),
                                                  "--output",
                                                  (dir.path() / "job").string(),
                                                  "--rank",
                                                  std::to_string(r),
                                                  "--world-size",
                                                  "2",
                                                  "--local-rank",
                                                  std::to_string(r),
                                                  "--rendezvous",
                                                  "file:" + (dir.path() / "rdv").string(),
                                                  "--epochs",
                                                  "200",
                                                  "--batch-size",
                                                  "32",
                                                  "--seed",
                                                  "3",
                                                  "--display",
                                                  "2",
                                                  "--step-timeout",
                                                  "3",
                                                  "--dist-peer-timeout",
                                                  "5"},
                         dir.path() / fmt::format("log.{}", r), env);
  }
  std::string report(int r) const {
    return fmt::format("rank {}: exit {} signal {}\n{}", r, procs[r].exit_code(), procs[r].term_signal(),
                       procs[r].log());
  }
};

TEST_F(TwoGpuTrainerTest, AStalledProcessEndsTheJobOnEveryRank) {
  TwoProcessTraining job(root_->path() / "ds", {{"INCEPT_FAULT_STALL", "1:20"}});
  ASSERT_TRUE(testing::wait_all(job.procs, 240)) << "a rank hung\n" << job.report(0) << job.report(1);
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(job.procs[r].exit_code(), 0) << job.report(r);
    EXPECT_NE(job.procs[r].log().find("NCCL"), std::string::npos) << job.report(r);
  }
  EXPECT_NE(job.procs[0].log().find("timed out after 3.0 s"), std::string::npos) << job.report(0);
  std::printf("ranks ended %.1f s apart\n",
              std::fabs(job.procs[0].end_seconds() - job.procs[1].end_seconds()));
}

TEST_F(TwoGpuTrainerTest, AKilledProcessEndsTheJobOnTheOtherRank) {
  TwoProcessTraining job(root_->path() / "ds", {});
  // Wait until both train (rank 0 prints progress lines), then kill rank 1.
  const auto t0 = std::chrono::steady_clock::now();
  while (job.procs[0].log().find(" img/s") == std::string::npos && seconds_since(t0) < 120 &&
         job.procs[0].running() && job.procs[1].running())
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(job.procs[0].running() && job.procs[1].running()) << job.report(0) << job.report(1);
  ::kill(job.procs[1].pid(), SIGKILL);
  ASSERT_TRUE(testing::wait_all(job.procs, 120)) << "the survivor hung\n" << job.report(0);
  EXPECT_EQ(job.procs[1].term_signal(), SIGKILL);
  EXPECT_NE(job.procs[0].exit_code(), 0) << job.report(0);
  const double after = job.procs[0].end_seconds() - job.procs[1].end_seconds();
  std::printf("rank 0 ended %.1f s after rank 1 was killed\n", after);
  EXPECT_LT(after, 30.0) << job.report(0);
}

}  // namespace
}  // namespace incept

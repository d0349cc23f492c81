// train_googlenet: DIGITS' "New image classification model" job on the command line: trains
// DIGITS' GoogLeNet on a dataset folder written by imagenet_ingest (or DIGITS), with DIGITS'
// solver defaults, validation, snapshots, metrics and a report; --resume continues a job.
// Ctrl-C (SIGINT) or SIGTERM finishes the step, writes a snapshot and exits 0.
// The work is engine/trainer.h; this file parses flags and prints the summary.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/log.h"
#include "engine/nccl_comm.h"
#include "engine/report.h"
#include "engine/trainer.h"
#include "tools/cli_checks.h"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  if (g_stop.exchange(true)) _exit(130);  // a second Ctrl-C: leave at once
  static const char msg[] =
      "\nstop requested: finishing the step and writing a snapshot (Ctrl-C again to abort)\n";
  [[maybe_unused]] auto n = write(2, msg, sizeof msg - 1);
}

std::vector<double> parse_percents(const std::string& text) {
  std::vector<double> v;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      std::size_t used = 0;
      v.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw incept::Error(fmt::format("--step-size: '{}' is not a number (percent of training)", item));
    }
    if (!(v.back() > 0))
      throw incept::Error(fmt::format("--step-size: {} is not above 0 (percent of training)", item));
    if (v.size() > 1 && !(v.back() > v[v.size() - 2]))
      throw incept::Error(
          fmt::format("--step-size: the multistep percents must increase, e.g. 50,85; got {}", text));
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace incept;
  CLI::App app{
      "Train DIGITS' GoogLeNet on a DIGITS/Caffe LMDB dataset folder (imagenet_ingest's output), as DIGITS' "
      "image classification job: same network, solver defaults, epoch arithmetic, validation and snapshots."};
  TrainConfig c;
  std::string gpus = "auto", policy = "step", step_size = "33", blob_format = "compatible";
  double gamma = -1, power = -1;
  int seed = 0;
  bool eager = false;
  c.form.batch_size = 128;
  app.add_option("--dataset", c.dataset_dir,
                 "dataset folder (labels.txt, train_db, val_db, mean.binaryproto); not needed with --resume");
  app.add_option("--output", c.job_dir, "job folder to create (snapshots, metrics, report)")->required();
  app.add_option(
         "--gpus", gpus,
         "GPUs to train on: auto (GPU 0; under mpirun/srun the process's own), a list such as 0,1 (data "
         "parallel), all, or none for the CPU reference (slow)")
      ->capture_default_str();
  app.add_option("--network", c.network, "googlenet, or lenet (DIGITS' LeNet, for small gray images)")
      ->capture_default_str();
  app.add_option("--epochs", c.form.epochs, "training epochs")->check(cli::above(0))->capture_default_str();
  app.add_option("--batch-size", c.form.batch_size,
                 "global batch (images per iteration; 0: the network's, 32 for GoogLeNet, what DIGITS "
                 "uses when the field is left blank)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--val-batch-size", c.form.val_batch_size, "validation batch (0: the batch size)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--base-lr", c.form.base_lr, "base learning rate")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--lr-policy", policy, "fixed, step, multistep, exp, inv, poly or sigmoid")
      ->capture_default_str();
  app.add_option("--step-size", step_size,
                 "step: percent of training per step; multistep: percents, e.g. 50,85; sigmoid: percent")
      ->capture_default_str();
  // -1 is the flag's "DIGITS' default"; any other negative value is a mistake, not a default.
  const CLI::Validator default_or_non_negative(
      [](std::string& v) {
        const double x = std::strtod(v.c_str(), nullptr);
        return x == -1 || x >= 0 ? std::string() : "must be at least 0, or -1 for DIGITS' default; got " + v;
      },
      "-1 or >= 0");
  app.add_option(
         "--gamma", gamma,
         "LR policy gamma (-1: DIGITS' default for the policy: step 0.1, multistep 0.5, exp 0.95, inv 0.1, "
         "sigmoid 0.1)")
      ->check(default_or_non_negative)
      ->capture_default_str();
  app.add_option("--power", power, "inv / poly power (-1: DIGITS' default: inv 0.5, poly 3)")
      ->check(default_or_non_negative)
      ->capture_default_str();
  app.add_option("--max-iter", c.max_iter, "iterations to train (0: epochs x iterations per epoch)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--val-interval", c.form.val_interval,
                 "epochs between validations (0: before training and at the end only)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--snapshot-interval", c.form.snapshot_interval,
                 "epochs between snapshots (0: the final one only)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--display", c.display, "iterations between progress lines (0: DIGITS' rule, 8 per epoch)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--precision", c.precision, "auto (bf16 where the GPU has it, else fp32), bf16 or fp32")
      ->capture_default_str();
  app.add_option("--seed", seed, "random seed (data order, augmentation, initial weights; 0: random)")
      ->capture_default_str();
  app.add_flag(
      "--deterministic", c.deterministic,
      "deterministic GPU algorithms: the same seed gives the same bits (and --resume continues bitwise)");
  app.add_flag("--round-grads-bf16", c.round_grads_bf16,
               "experiment, fp32 only: round every parameter gradient to bf16 before the update (what a bf16 "
               "run stores), to measure what that rounding alone costs");
  app.add_flag(
      "--keep-im2col", c.keep_im2col,
      "GPU: the GEMM convolutions (fp32's 3x3/5x5 layers, and conv1 except on A100/H100-class GPUs; with "
      "--fp32-math strict the 3x3 layers run as Winograd, which keeps no rows) keep their im2col rows "
      "from forward for the weight gradient instead of rebuilding them in chunks: more device memory "
      "for fewer passes. With 3xTF32 "
      "(the default on compute capability 8.0+), whose layers read their rows in place, it makes them "
      "build and keep rows: slower (31.03 vs 30.69 ms) and 8.2 vs 3.9 GiB");
  app.add_option(
         "--fp32-math", c.fp32_math,
         "GPU fp32 GEMMs: auto (3xTF32 tensor-core GEMMs at fp32 accuracy on compute capability 8.0+, "
         "else strict), strict (FMA fp32, no tensor cores: cuBLAS GEMMs, and channels-last 3x3 layers as "
         "F(2x2,3x3) Winograd at the GEMMs' measured error) or 3xtf32; saved with the job. conv1 runs as a "
         "direct FMA convolution in channels-last fp32 either way on GPUs whose blocks take 154 KB of shared "
         "memory (A100, H100, H200)")
      ->capture_default_str();
  app.add_flag("--resume", c.resume, "continue the job in --output from its latest snapshot");
  app.add_option("--mean", c.mean, "subtract the mean: image, pixel or none")->capture_default_str();
  app.add_option("--crop-size", c.crop, "input crop (0: the network's, 224)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--weights", c.weights,
                 "a .caffemodel to initialise from (fine-tuning; layers matched by name)");
  app.add_option("--blob-format", blob_format,
                 "snapshot blob format: compatible (old Caffe, Jetson) or modern")
      ->capture_default_str();
  app.add_option("--loader-threads", c.loader_threads, "image decode threads (0: automatic)")
      ->check(cli::at_least(0))
      ->capture_default_str();
  app.add_option("--stop-after", c.stop_at,
                 "stop with a snapshot once this iteration is done (-1: never); --resume continues")
      ->check(cli::at_least(-1))
      ->capture_default_str();
  app.add_flag("--eager", eager, "run the step without a CUDA graph (debugging)");
  auto* dist =
      app.add_option_group("distributed", "several processes (one or more GPUs each), on one or many nodes");
  dist->add_option("--rank", c.dist.rank, "this process's rank (default: from mpirun/srun)")
      ->capture_default_str();
  dist->add_option("--world-size", c.dist.world, "number of processes (default: from mpirun/srun)")
      ->capture_default_str();
  dist->add_option("--local-rank", c.dist.local_rank, "rank on this node (default: from mpirun/srun)")
      ->capture_default_str();
  dist->add_option(
      "--rendezvous", c.dist.rendezvous,
      "where the processes meet: tcp:HOST:PORT (rank 0's host), file:PATH on a shared filesystem, or "
      "mpi (default under mpirun when built with MPI)");
  dist->add_option("--dist-timeout", c.dist.timeout_s, "seconds to wait for every process to join")
      ->capture_default_str();
  dist->add_option("--dist-peer-timeout", c.dist.peer_timeout_s,
                   "seconds of silence after which a peer process counts as lost")
      ->capture_default_str();
  dist->add_option("--step-timeout", c.dist.step_timeout_s,
                   "seconds a training step's gradient all-reduce may take before the job ends with an "
                   "error on every GPU (a peer alive but stuck)")
      ->capture_default_str();
  dist->add_option("--grad-allreduce", c.grad_allreduce,
                   "bf16 training on several GPUs: sum the gradients in fp32 (exact as on one GPU) or "
                   "bf16 (half the bytes: for slow networks between nodes)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  try {
    c.seed = std::uint64_t(std::uint32_t(seed));
    c.graph = !eager;
    c.blob_format = parse_blob_format(blob_format);
    c.form.policy = parse_lr_policy(policy);
    c.form.gamma = gamma;
    c.form.power = power;
    const std::vector<double> steps = parse_percents(step_size);
    if (c.form.policy == LrPolicy::kMultiStep)
      c.form.multistep_percents = app.count("--step-size") ? steps : std::vector<double>{};
    else if (!steps.empty())
      c.form.step_percent = c.form.policy == LrPolicy::kSigmoid && !app.count("--step-size") ? -1 : steps[0];
    nccl_default_environment();
    if (gpus != "none") {
      if (gpu_count() == 0)
        throw Error(fmt::format("no GPU here ({}): use --gpus none to train on the CPU reference (slow)",
                                no_gpu_reason()));
      c.gpus = local_gpus(detect_dist_env(c.dist), gpus == "auto" ? "" : gpus);
    }
    if (c.resume)
      for (const char* flag : {"--epochs", "--batch-size", "--base-lr", "--lr-policy", "--seed",
                               "--precision", "--dataset", "--network", "--max-iter"})
        if (app.count(flag) && std::string(flag) != "--dataset")
          std::fprintf(stderr, "train_googlenet: %s is ignored with --resume (the job keeps its settings)\n",
                       flag);
    const TrainResult r = train_job(c, &g_stop);

    std::printf("\n");
    if (r.interrupted)
      std::printf("stopped at iteration %lld of %lld; continue with: train_googlenet --output %s --resume\n",
                  static_cast<long long>(r.iter), static_cast<long long>(r.max_iter), c.job_dir.c_str());
    else
      std::printf("finished: %lld iterations\n", static_cast<long long>(r.iter));
    for (const auto& h : summarize_accuracy([&] {
           std::vector<MetricPoint> pts;
           if (!r.final_val.empty()) pts.push_back({"val", r.iter, 0, 0, 0, 0, r.final_val});
           return pts;
         }())) {
      std::printf("final validation%s: top-1 %.2f %%", h.head.empty() ? "" : (" (" + h.head + ")").c_str(),
                  100 * h.final_top1);
      if (!std::isnan(h.final_top5)) std::printf(", top-5 %.2f %%", 100 * h.final_top5);
      if (!std::isnan(h.final_loss)) std::printf(", loss %.4f", h.final_loss);
      std::printf("\n");
    }
    if (!r.last_snapshot.empty())
      std::printf("snapshot: %s (%.1f MB)\n", r.last_snapshot.c_str(),
                  double(std::filesystem::file_size(r.last_snapshot)) / 1e6);
    std::printf("report:   %s/report.html, %s/report.png\n", c.job_dir.c_str(), c.job_dir.c_str());
    std::printf("time:     %s, %.0f img/s training throughput\n", format_duration(r.train_seconds).c_str(),
                r.images_per_second);
    if (r.corrupt_records)
      std::printf("corrupt records skipped: %lld\n", static_cast<long long>(r.corrupt_records));
  } catch (const CudaError& e) {
    std::fprintf(stderr, "train_googlenet: GPU error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_googlenet: %s\n", e.what());
    return 1;
  }
  return 0;
}

// The pieces of a training job (engine/trainer.h) shared by its translation units; not a public
// API. train_setup.cpp checks the input and fixes the job (JobSetup), train_loop.cpp runs one
// replica's loop (run_replica), trainer.cpp builds the replicas (one per GPU, or the CPU) and
// runs them, in threads when this process drives several GPUs.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "engine/log.h"
#include "engine/metrics.h"
#include "engine/replica_sync.h"
#include "engine/report.h"
#include "engine/solver.h"
#include "engine/train_backend.h"
#include "engine/trainer.h"

namespace incept {

// The job's console and train.log: every line goes to both (rank 0 of the job only).
class JobLog {
 public:
  JobLog() = default;
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;
  ~JobLog();
  void open(const std::filesystem::path& file);
  void set_quiet(bool quiet) { quiet_ = quiet; }  // other ranks print nothing but warnings
  template <typename... Args>
  void info(fmt::format_string<Args...> f, Args&&... args) {
    if (!quiet_) write(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> f, Args&&... args) {
    write(LogLevel::kWarn, fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  void write(LogLevel level, const std::string& s);
  std::FILE* f_ = nullptr;
  bool quiet_ = false;
  std::mutex mu_;
};

// Everything fixed before training starts (checked input, the schedule, the data transform).
struct JobSetup {
  TrainConfig c;
  std::filesystem::path job;
  data::DatasetInfo ds;
  data::RecordShape shape;
  NetSpec spec;
  int classes = 0, crop = 0;
  bool mirror = false;
  float scale = 1.f;
  std::int64_t n_val = 0;
  SolverSettings s;  // batch_size / val_batch_size: the global batches
  std::vector<float> mean_chw, mean_values;
  std::string precision;  // "bf16" | "fp32", resolved
};

// Checks the dataset, the flags and the devices, resolves the schedule. Throws Error for bad input.
JobSetup prepare_job(TrainConfig c);
// job.json, labels.txt, mean.binaryproto and the four prototxt files of a new job.
void write_job_files(const JobSetup& j);
// The template every replica's backend starts from (batches are the global ones).
BackendConfig backend_template(const JobSetup& j);
void check_job_dir_for_new_job(const std::filesystem::path& dir);
std::vector<std::string> scalar_tops(const NetPlan& p);
std::string fmt_means(const OutputSums& v);

// One model replica: its backend (a GPU, or the CPU) and its share of every batch.
struct Replica {
  int local = 0;                 // index among this process's replicas
  int rank = 0;                  // index among all replicas of the job (the NCCL rank)
  int world = 1;                 // replicas in the job
  int batch = 0, val_batch = 0;  // this replica's share of the global batches
  std::unique_ptr<TrainBackend> backend;
  std::unique_ptr<data::BatchLoader> train_loader, val_loader;
};

// What the replicas share while they train.
struct JobRun {
  JobRun(const JobSetup& setup, ReplicaSync& s, JobLog& log) : j(setup), sync(s), out(log) {}
  const JobSetup& j;
  ReplicaSync& sync;
  JobLog& out;
  MetricsLog* metrics = nullptr;  // job rank 0 only
  ReportInfo ri;
  const std::atomic<bool>* stop = nullptr;
  const NcclGroup* nccl = nullptr;  // data parallel: the communicators (failed() after an abort)
  std::int64_t start_iter = 0;
  double wall_before = 0;
  std::int64_t corrupt_before = 0;
  std::int64_t last_val_iter = -1;
  TrainResult result;  // filled by job rank 0
};

// One replica's training loop (all replicas of a job run it in lockstep).
void run_replica(JobRun& run, Replica& r);

}  // namespace incept

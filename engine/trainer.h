// DIGITS' training job (what `train_googlenet` runs): a dataset folder written by
// imagenet_ingest (or DIGITS / Caffe's convert_imageset), DIGITS' network and solver
// arithmetic (iterations per epoch = ceil(train records / batch), every LR policy with its
// parameters in percent of training), a validation pass over the whole validation set before
// training and every val_interval epochs (loss, top-1 and top-5 of every head), snapshots in
// Caffe's format every snapshot_interval epochs, metrics, an HTML/PNG report, and an exact
// resume from the latest snapshot.
//
// One loop drives a TrainBackend (engine/train_backend.h): the CPU reference or a GPU. The
// data order and augmentation are pure functions of (seed, sample index) (data/loader.h), and
// dropout masks of (seed, iteration), so a resumed job follows the uninterrupted trajectory.
//
// The job folder (JOB_DIR) holds job.json (the settings, read back by --resume and by
// export_caffe), labels.txt and mean.binaryproto (copied from the dataset), train_val /
// deploy / solver / original.prototxt, snapshot_iter_N.caffemodel/.solverstate,
// metrics.csv, metrics.jsonl, report.html, report.png and train.log.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/caffe_model.h"
#include "engine/dist_env.h"
#include "engine/solver.h"

namespace incept {

struct TrainConfig {
  std::string dataset_dir, job_dir;
  std::string network = "googlenet";    // googlenet | lenet
  std::vector<int> gpus;                // this process's GPUs (several: data parallel); empty: the CPU
  DistFlags dist;                       // several processes (mpirun, srun, or --rank/--world-size)
  DigitsSolverForm form;                // epochs, intervals, batch (global), LR policy, ...
  std::int64_t max_iter = 0;            // > 0: overrides epochs x iterations per epoch
  std::int64_t display = 0;             // > 0: overrides DIGITS' display interval
  std::string precision = "auto";       // auto | bf16 | fp32 (GPU; the CPU is fp32)
  std::string grad_allreduce = "fp32";  // data parallel in bf16: sum the gradients in fp32 or bf16
  std::uint64_t seed = 0;               // data order, augmentation, fillers, dropout
  bool deterministic = false;           // GPU: deterministic algorithms (bitwise resume in fp32)
  bool round_grads_bf16 = false;        // GPU fp32: gradients rounded to bf16 (GpuNetOptions)
  bool keep_im2col = false;             // GPU: GEMM convolutions keep their rows (GpuNetOptions; per run)
  // GPU fp32 GEMMs: auto (3xTF32 where the GPU has TF32 tensor cores, else strict), strict
  // (cuBLAS FMA fp32) or 3xtf32 (GpuNetOptions::tf32x3). Saved: it changes the bits.
  std::string fp32_math = "auto";
  std::string mean = "image";                        // image | pixel | none (DIGITS' "Subtract mean")
  int crop = 0;                                      // 0: the network's crop_size
  int loader_threads = 0;                            // 0: automatic
  bool graph = true;                                 // GPU: the step as one CUDA graph
  std::string weights;                               // a .caffemodel to start from (fine-tuning)
  BlobFormat blob_format = BlobFormat::kCompatible;  // snapshots
  bool resume = false;
  std::int64_t stop_at = -1;  // >= 0: stop as if interrupted once this iteration is done (snapshot)
};

struct TrainResult {
  bool finished = false;     // reached max_iter
  bool interrupted = false;  // stopped by a request (SIGINT/SIGTERM), snapshot written
  std::int64_t iter = 0, max_iter = 0;
  std::string last_snapshot;                              // path of the newest caffemodel ("" if none)
  std::vector<std::pair<std::string, double>> final_val;  // last validation means
  double train_seconds = 0;
  double images_per_second = 0;  // training throughput of this run (validation excluded)
  std::int64_t corrupt_records = 0;
};

// Runs (or, with config.resume, continues) the job. `stop` is checked after every step: when
// it becomes true the step finishes, a snapshot is written and the function returns with
// interrupted set. Bad input (dataset, job folder, flags, GPUs) throws incept::Error before
// training starts; a NaN or infinite loss throws Error after keeping the last good snapshot.
TrainResult train_job(TrainConfig config, const std::atomic<bool>* stop = nullptr);

// Reads JOB_DIR/job.json back into a config (for --resume and the tools).
TrainConfig read_job_config(const std::string& job_dir);

}  // namespace incept

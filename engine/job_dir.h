// A training job's folder as train_googlenet writes it (/work/notes/contracts.md): job.json's
// settings, the snapshots (snapshot_iter_N.caffemodel) with DIGITS' epoch numbering, and what
// the Caffe files of the job are generated from (data sources, solver settings). export_caffe
// and classify read jobs through this; they never parse job.json themselves.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/caffe_model.h"
#include "engine/solver.h"

namespace incept {

struct JobInfo {
  std::filesystem::path dir;
  std::string name;     // job.json "name" (the folder's name)
  std::string network;  // "googlenet", "lenet"
  std::string created;  // ISO 8601 UTC, "2026-11-30T02:00:00Z"
  std::string dataset;  // the dataset folder
  int num_classes = 0;
  int image_height = 0, image_width = 0, image_channels = 0;  // "image_dims" [H, W, C]
  std::string resize_mode = "squash";
  int crop_size = 0;
  std::string mean = "image";  // "image" | "pixel" | "none"
  int batch_size = 0, val_batch_size = 0;
  double epochs = 0;
  std::int64_t seed = -1;
  bool gpu = true;  // "gpus" non-empty
  SolverSettings solver;
  nlohmann::json json;  // the whole file
};

// Reads JOB_DIR/job.json. Throws Error saying what is missing or malformed.
JobInfo read_job(const std::filesystem::path& dir);

struct SnapshotFile {
  std::int64_t iter = 0;
  double epoch = 0;  // iter / train_iter, rounded to 3 decimals as DIGITS shows it
  std::filesystem::path path;
};
// The job's snapshot_iter_N.caffemodel files, by iteration.
std::vector<SnapshotFile> list_snapshots(const JobInfo& job);
// The latest snapshot, the one of iteration `iter`, or the one of epoch `epoch` (DIGITS'
// "Download Model" choice). Throws Error listing what exists when there is no such snapshot.
SnapshotFile pick_snapshot(const JobInfo& job, std::optional<std::int64_t> iter, std::optional<double> epoch);

// DIGITS' epoch label: 3 decimals, without trailing zeros ("2", "1.5").
std::string epoch_label(double epoch);

// What the job's train_val.prototxt injects: the dataset's LMDB folders and mean (file for
// mean "image", per-channel values of mean.binaryproto for "pixel"), batch sizes and crop.
DataSources job_data_sources(const JobInfo& job);
SolverFileOptions job_solver_options(const JobInfo& job);

}  // namespace incept

// A job's snapshots, as Caffe and DIGITS name them: JOB_DIR/snapshot_iter_N.caffemodel (the
// weights: a binary NetParameter with the train_val layers, engine/caffe_model.h) and
// JOB_DIR/snapshot_iter_N.solverstate (caffe.SolverState: iter, learned_net, the momentum
// history per parameter blob, plus incept's fields for an exact resume). Both are written
// atomically (temporary file, fsync, rename), the caffemodel first, so a solverstate always
// names a complete caffemodel; as DIGITS does, only the newest solverstate is kept.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/caffe_model.h"
#include "engine/layer_spec.h"
#include "engine/net_plan.h"

namespace incept {

// What a resume checks and restores besides the weights.
struct SolverStateInfo {
  std::int64_t iter = 0;
  std::uint64_t seed = 0;
  std::int64_t train_records = 0, val_records = 0;
  int batch_size = 0;
  std::int64_t max_iter = 0;
  std::string precision;
  int world_size = 1;
  std::int64_t corrupt_skipped = 0;
  double wall_s = 0;  // training time of the job up to this snapshot
};

struct SnapshotFiles {
  std::int64_t iter = 0;
  std::filesystem::path caffemodel, solverstate;  // solverstate empty when it was deleted
};

std::string snapshot_name(std::int64_t iter, const char* ext);  // "snapshot_iter_N.<ext>"

// Writes both files for iteration info.iter; returns the caffemodel's path. `params` and
// `momentum` are host fp32 in the plan's (Caffe's) layout. Earlier solverstates are removed.
std::filesystem::path write_snapshot(const std::filesystem::path& job_dir, const NetSpec& spec,
                                     const NetPlan& plan, std::span<const float> params,
                                     std::span<const float> momentum, const SolverStateInfo& info,
                                     BlobFormat format = BlobFormat::kCompatible);

// The job's snapshots, oldest first.
std::vector<SnapshotFiles> list_snapshots(const std::filesystem::path& job_dir);
// The newest snapshot that has both files, or none.
std::optional<SnapshotFiles> latest_resumable(const std::filesystem::path& job_dir);

// Reads a solverstate: its info and the momentum (plan layout, host fp32). Throws Error when
// the file is unreadable or its history does not fit the plan.
SolverStateInfo read_solverstate(const std::filesystem::path& path, const NetPlan& plan,
                                 std::span<float> momentum);

}  // namespace incept

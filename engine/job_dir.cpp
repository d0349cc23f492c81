// Job folder reader (job_dir.h).
#include "engine/job_dir.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "data/datum.h"
#include "engine/check.h"
#include "engine/snapshot.h"

namespace incept {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A key of job.json with a clear error when it is missing or of the wrong type.
template <typename T>
T get(const json& j, const char* key, const fs::path& file) {
  const auto it = j.find(key);
  if (it == j.end()) throw Error(fmt::format("{}: no \"{}\"", file.string(), key));
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(fmt::format("{}: \"{}\" has the wrong type ({})", file.string(), key, it->dump()));
  }
}

template <typename T>
T get_or(const json& j, const char* key, T dflt, const fs::path& file) {
  return j.contains(key) ? get<T>(j, key, file) : dflt;
}

SolverSettings solver_settings(const json& s, const fs::path& file) {
  SolverSettings out;
  out.train_iter = get<std::int64_t>(s, "train_iter", file);
  out.max_iter = get<std::int64_t>(s, "max_iter", file);
  out.snapshot = get_or<std::int64_t>(s, "snapshot", 0, file);
  out.test_interval = get_or<std::int64_t>(s, "test_interval", 0, file);
  out.test_iter = get_or<std::int64_t>(s, "test_iter", 0, file);
  out.display = get_or<std::int64_t>(s, "display", 1, file);
  out.iter_size = get_or<int>(s, "iter_size", 1, file);
  out.momentum = get_or<double>(s, "momentum", 0.9, file);
  out.weight_decay = get_or<double>(s, "weight_decay", 0.0, file);
  LrSchedule& lr = out.lr;
  lr.policy = parse_lr_policy(get<std::string>(s, "lr_policy", file));
  lr.base_lr = get<double>(s, "base_lr", file);
  lr.gamma = get_or<double>(s, "gamma", 0.1, file);
  lr.power = get_or<double>(s, "power", 1.0, file);
  lr.stepsize = get_or<std::int64_t>(s, "stepsize", 1, file);
  lr.stepvalues = get_or<std::vector<std::int64_t>>(s, "stepvalue", {}, file);
  lr.max_iter = out.max_iter;
  if (out.train_iter <= 0 || out.max_iter <= 0)
    throw Error(fmt::format("{}: solver train_iter and max_iter must be positive", file.string()));
  return out;
}

}  // namespace

JobInfo read_job(const fs::path& dir) {
  const fs::path file = dir / "job.json";
  if (!fs::is_directory(dir)) throw Error(fmt::format("{}: no such job folder", dir.string()));
  std::ifstream in(file);
  if (!in)
    throw Error(fmt::format("{} is not a training job: no job.json (train one with train_googlenet --output)",
                            dir.string()));
  JobInfo job;
  job.dir = dir;
  try {
    job.json = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({})", file.string(), e.what()));
  }
  const json& j = job.json;
  job.name = get_or<std::string>(j, "name", fs::absolute(dir).lexically_normal().filename().string(), file);
  job.network = get<std::string>(j, "network", file);
  job.created = get_or<std::string>(j, "created", "", file);
  job.dataset = get_or<std::string>(j, "dataset", "", file);
  job.num_classes = get<int>(j, "num_classes", file);
  const auto dims = get<std::vector<int>>(j, "image_dims", file);
  if (dims.size() != 3 || dims[0] <= 0 || dims[1] <= 0 || (dims[2] != 1 && dims[2] != 3))
    throw Error(fmt::format("{}: image_dims must be [height, width, 1 or 3]", file.string()));
  job.image_height = dims[0], job.image_width = dims[1], job.image_channels = dims[2];
  job.resize_mode = get_or<std::string>(j, "resize_mode", "squash", file);
  job.crop_size = get_or<int>(j, "crop_size", 0, file);
  job.mean = get_or<std::string>(j, "mean", "image", file);
  if (job.mean != "image" && job.mean != "pixel" && job.mean != "none")
    throw Error(fmt::format("{}: mean must be image, pixel or none, not {}", file.string(), job.mean));
  job.batch_size = get_or<int>(j, "batch_size", 0, file);
  job.val_batch_size = get_or<int>(j, "val_batch_size", job.batch_size, file);
  job.epochs = get_or<double>(j, "epochs", 0.0, file);
  job.seed = get_or<std::int64_t>(j, "seed", -1, file);
  job.gpu = !get_or<std::vector<int>>(j, "gpus", {}, file).empty();
  if (job.num_classes <= 0) throw Error(fmt::format("{}: num_classes must be positive", file.string()));
  job.solver = solver_settings(get<json>(j, "solver", file), file);
  job.solver.batch_size = job.batch_size;
  job.solver.val_batch_size = job.val_batch_size;
  return job;
}

std::string epoch_label(double epoch) {
  std::string s = fmt::format("{:.3f}", epoch);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::vector<SnapshotFile> list_snapshots(const JobInfo& job) {
  std::vector<SnapshotFile> out;
  for (const SnapshotFiles& f : list_snapshots(job.dir)) {  // engine/snapshot.h, by iteration
    SnapshotFile s;
    s.iter = f.iter;
    s.epoch = std::round(double(s.iter) / double(job.solver.train_iter) * 1000.0) / 1000.0;
    s.path = f.caffemodel;
    out.push_back(s);
  }
  return out;
}

SnapshotFile pick_snapshot(const JobInfo& job, std::optional<std::int64_t> iter,
                           std::optional<double> epoch) {
  const std::vector<SnapshotFile> all = list_snapshots(job);
  if (all.empty())
    throw Error(
        fmt::format("{}: the job has no snapshot yet (snapshot_iter_N.caffemodel)", job.dir.string()));
  if (!iter && !epoch) return all.back();
  for (const SnapshotFile& s : all)
    if ((iter && s.iter == *iter) || (epoch && std::abs(s.epoch - *epoch) < 5e-4)) return s;
  std::string have;
  for (const SnapshotFile& s : all)
    have += fmt::format("{}{} (epoch {})", have.empty() ? "" : ", ", s.iter, epoch_label(s.epoch));
  if (iter)
    throw Error(
        fmt::format("{}: no snapshot of iteration {}; the job has {}", job.dir.string(), *iter, have));
  throw Error(fmt::format("{}: no snapshot of epoch {}; the job has iterations {}", job.dir.string(),
                          epoch_label(*epoch), have));
}

DataSources job_data_sources(const JobInfo& job) {
  const fs::path ds = job.dataset;
  DataSources d;
  d.train_db = (ds / "train_db").string();
  if (fs::exists(ds / "val_db") || job.solver.test_interval > 0) d.val_db = (ds / "val_db").string();
  d.batch_size = job.batch_size;
  d.val_batch_size = job.val_batch_size;
  d.crop_size = job.crop_size;
  d.channels = job.image_channels;
  d.height = job.image_height;
  d.width = job.image_width;
  if (job.mean == "image") {
    d.mean_file = (ds / "mean.binaryproto").string();
  } else if (job.mean == "pixel") {
    // DIGITS' get_mean_pixel: the per-channel average of the mean image (BGR, as stored).
    fs::path mean = job.dir / "mean.binaryproto";
    if (!fs::exists(mean)) mean = ds / "mean.binaryproto";
    const data::MeanBlob m = data::read_mean_blobproto(mean.string());
    const std::size_t plane = std::size_t(m.height) * std::size_t(m.width);
    for (int c = 0; c < m.channels; ++c) {
      double sum = 0;
      for (std::size_t i = 0; i < plane; ++i) sum += m.chw[c * plane + i];
      d.mean_value.push_back(float(sum / double(plane)));
    }
  }
  return d;
}

SolverFileOptions job_solver_options(const JobInfo& job) {
  SolverFileOptions o;
  o.gpu = job.gpu;
  o.random_seed = job.seed;
  return o;
}

}  // namespace incept

// DIGITS' model archive (model_archive.h): export from a job folder, tar.gz through libarchive.
#include "engine/model_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/check.h"

namespace incept {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDeploy = "deploy.prototxt";
constexpr const char* kTrainVal = "train_val.prototxt";
constexpr const char* kSolver = "solver.prototxt";
constexpr const char* kOriginal = "original.prototxt";
constexpr const char* kLabels = "labels.txt";
constexpr const char* kMean = "mean.binaryproto";
constexpr const char* kInfo = "info.json";
constexpr std::int64_t kMaxEntryBytes = std::int64_t(2) << 30;  // a caffemodel's own limit

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot open {}", p.string()));
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// The first of `candidates` that exists, read; Error naming them all when none does.
std::string first_existing(const std::vector<fs::path>& candidates, const char* what) {
  for (const fs::path& p : candidates)
    if (fs::is_regular_file(p)) return slurp(p);
  std::string tried;
  for (const fs::path& p : candidates) tried += (tried.empty() ? "" : ", ") + p.string();
  throw Error(fmt::format("no {} found (looked at {})", what, tried));
}

struct ArchiveWriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

la_ssize_t append_to_string(archive*, void* client, const void* buffer, size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
  return la_ssize_t(length);
}

// Checks that the snapshot loads into the deploy net (every deploy layer with parameters finds
// its blobs with the right shapes), so that no archive goes out that Caffe would refuse.
void check_deploy_fits(const ModelFiles& f) {
  const caffe::NetParameter deploy = parse_net_prototxt(f.deploy_prototxt, kDeploy);
  const std::vector<std::int64_t> in = deploy_input_shape(deploy);
  PlanOptions o;
  o.stage = Stage::kDeploy;
  o.batch = 1;
  o.channels = int(in[1]), o.height = int(in[2]), o.width = int(in[3]);
  const NetPlan plan = plan_net(net_spec_from_prototxt(deploy), o);
  std::vector<float> params(plan.param_elems);
  const ImportReport r = import_params(parse_caffemodel(f.caffemodel, f.caffemodel_name), plan, params);
  if (!r.missing.empty() || !r.skipped_shape.empty())
    throw Error(
        fmt::format("{} does not fit deploy.prototxt ({} layers missing, e.g. {}; {} of another shape{}{})",
                    f.caffemodel_name, r.missing.size(), r.missing.empty() ? "none" : r.missing[0],
                    r.skipped_shape.size(), r.skipped_shape.empty() ? "" : ", e.g. ",
                    r.skipped_shape.empty() ? "" : r.skipped_shape[0]));
}

}  // namespace

std::vector<std::pair<std::string, const std::string*>> ModelFiles::entries() const {
  return {{kDeploy, &deploy_prototxt},    {kTrainVal, &train_val_prototxt},
          {kSolver, &solver_prototxt},    {kOriginal, &original_prototxt},
          {kLabels, &labels_txt},         {kMean, &mean_binaryproto},
          {caffemodel_name, &caffemodel}, {kInfo, &info_json}};
}

std::vector<std::string> ModelFiles::labels() const {
  std::vector<std::string> out;
  std::istringstream in(labels_txt);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::string info_json(const JobInfo& job, const std::string& caffemodel_name, const std::string& producer) {
  std::string created =
      job.created;  // "2026-11-30T02:00:00Z" -> Python's str(datetime): "2026-11-30 02:00:00"
  if (created.size() >= 19 && created[10] == 'T')
    created = created.substr(0, 10) + " " + created.substr(11, 8);
  const std::vector<SnapshotFile> snaps = list_snapshots(job);
  const bool done = !snaps.empty() && snaps.back().iter >= job.solver.max_iter;
  const char* user = std::getenv("USER");
  const nlohmann::json info = {
      {"id", job.name},
      {"job id", job.name},
      {"name", job.name},
      {"status", done ? "Done" : "Running"},
      {"dataset_id", fs::path(job.dataset).lexically_normal().filename().string()},
      {"creation time", created},
      {"username", user && *user ? user : "incept"},
      {"image dimensions", {job.image_height, job.image_width, job.image_channels}},
      {"image resize mode", job.resize_mode},
      {"mean file", kMean},
      {"labels file", kLabels},
      {"snapshot file", caffemodel_name},
      {"solver file", kSolver},
      {"train_val file", kTrainVal},
      {"deploy file", kDeploy},
      {"model file", kOriginal},
      {"framework", "caffe"},
      {"caffe flavor", "incept"},
      {"caffe version", "1.0"},  // what the files are written for: Caffe 1.0-era readers
      {"digits version", producer},
  };
  // nlohmann's objects are sorted by key: json.dumps(sort_keys=True, indent=4, separators=(',', ': ')).
  return info.dump(4, ' ', true);
}

ModelFiles export_model(const JobInfo& job, const NetSpec& spec, const ExportOptions& opt) {
  const SnapshotFile snap = pick_snapshot(job, opt.snapshot_iter, opt.epoch);
  ModelFiles f;
  f.caffemodel_name = snap.path.filename().string();
  f.caffemodel = reencode_caffemodel(slurp(snap.path), opt.blob_format, snap.path.string());
  const fs::path ds = job.dataset;
  f.labels_txt = first_existing({job.dir / kLabels, ds / kLabels}, "labels.txt");
  f.mean_binaryproto = first_existing({job.dir / kMean, ds / kMean}, "mean.binaryproto");
  // The files the job wrote at its start; generated the same way where the job lacks them.
  std::optional<DataSources> sources;
  auto data = [&]() -> const DataSources* {
    if (!sources) sources = job_data_sources(job);
    return &*sources;
  };
  auto job_file = [&](const char* name, auto generate) {
    return fs::is_regular_file(job.dir / name) ? slurp(job.dir / name) : generate();
  };
  f.deploy_prototxt = job_file(
      kDeploy, [&] { return net_prototxt(net_parameter(spec, NetFile::kDeploy, job.num_classes, data())); });
  f.train_val_prototxt = job_file(kTrainVal, [&] {
    return net_prototxt(net_parameter(spec, NetFile::kTrainVal, job.num_classes, data()));
  });
  f.original_prototxt = job_file(kOriginal, [&] {
    return net_prototxt(net_parameter(spec, NetFile::kOriginal, job.num_classes, nullptr));
  });
  f.solver_prototxt = job_file(kSolver, [&] { return solver_prototxt(job.solver, job_solver_options(job)); });
  f.info_json = info_json(job, f.caffemodel_name, opt.producer);
  check_deploy_fits(f);
  return f;
}

std::uintmax_t write_model_archive(const fs::path& out, const ModelFiles& files) {
  std::string bytes;
  std::unique_ptr<archive, ArchiveWriteDeleter> a(archive_write_new());
  auto check = [&](int rc, const char* what) {
    if (rc != ARCHIVE_OK)
      throw Error(
          fmt::format("cannot write {}: {} failed: {}", out.string(), what, archive_error_string(a.get())));
  };
  check(archive_write_add_filter_gzip(a.get()), "gzip");
  check(archive_write_set_format_ustar(a.get()), "tar format");
  check(archive_write_set_bytes_in_last_block(a.get(), 1), "block setup");
  check(archive_write_open(a.get(), &bytes, nullptr, append_to_string, nullptr), "open");
  const std::time_t now = std::time(nullptr);
  for (const auto& [name, data] : files.entries()) {
    std::unique_ptr<archive_entry, EntryDeleter> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_size(e.get(), la_int64_t(data->size()));
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_mtime(e.get(), now, 0);
    check(archive_write_header(a.get(), e.get()), "header");
    if (!data->empty() && archive_write_data(a.get(), data->data(), data->size()) != la_ssize_t(data->size()))
      throw Error(fmt::format("cannot write {}: {}", out.string(), archive_error_string(a.get())));
  }
  check(archive_write_close(a.get()), "close");
  write_file_atomic(out, bytes);
  return bytes.size();
}

ModelFiles read_model_archive(const fs::path& path) {
  std::unique_ptr<archive, ArchiveReadDeleter> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_zip(a.get());
  if (!fs::is_regular_file(path))
    throw Error(fmt::format("{}: no such model archive (export one with export_caffe)", path.string()));
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK)
    throw Error(fmt::format("{} is not a readable model archive (tar.gz, tar or zip): {}", path.string(),
                            archive_error_string(a.get())));
  std::map<std::string, std::string> files;
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    const std::string name = fs::path(archive_entry_pathname(e)).filename().string();
    const la_int64_t size = archive_entry_size(e);
    if (size < 0 || size > kMaxEntryBytes)
      throw Error(fmt::format("{}: entry {} has an impossible size", path.string(), name));
    std::string data(std::size_t(size), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
      const la_ssize_t n = archive_read_data(a.get(), data.data() + got, data.size() - got);
      if (n < 0) throw Error(fmt::format("{}: {}: {}", path.string(), name, archive_error_string(a.get())));
      if (n == 0) break;
      got += std::size_t(n);
    }
    if (got != data.size()) throw Error(fmt::format("{}: {} is truncated", path.string(), name));
    files[name] = std::move(data);
  }
  if (rc != ARCHIVE_EOF)
    throw Error(fmt::format("{} is not a readable model archive (tar.gz, tar or zip): {}", path.string(),
                            archive_error_string(a.get())));
  ModelFiles f;
  auto take = [&](const char* name, std::string* to, bool required) {
    const auto it = files.find(name);
    if (it != files.end())
      *to = std::move(it->second);
    else if (required)
      throw Error(fmt::format("{}: the model archive has no {}", path.string(), name));
  };
  take(kDeploy, &f.deploy_prototxt, true);
  take(kLabels, &f.labels_txt, true);
  take(kTrainVal, &f.train_val_prototxt, false);
  take(kSolver, &f.solver_prototxt, false);
  take(kOriginal, &f.original_prototxt, false);
  take(kMean, &f.mean_binaryproto, false);
  take(kInfo, &f.info_json, false);
  for (auto& [name, data] : files) {
    if (name.size() < 11 || name.compare(name.size() - 11, 11, ".caffemodel") != 0) continue;
    if (!f.caffemodel_name.empty())
      throw Error(
          fmt::format("{}: several .caffemodel files ({}, {})", path.string(), f.caffemodel_name, name));
    f.caffemodel_name = name;
    f.caffemodel = std::move(data);
  }
  if (f.caffemodel_name.empty())
    throw Error(fmt::format("{}: the model archive has no .caffemodel", path.string()));
  return f;
}

}  // namespace incept

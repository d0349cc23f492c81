// DIGITS' training job (trainer.h): checks, job files, the loop, validation, snapshots, resume.
#include "engine/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "data/dataset.h"
#include "data/loader.h"
#include "engine/atomic_file.h"
#include "engine/check.h"
#include "engine/device.h"
#include "engine/log.h"
#include "engine/metrics.h"
#include "engine/report.h"
#include "engine/snapshot.h"
#include "engine/train_backend.h"
#include "models/models.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace incept {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

NetSpec network_spec(const std::string& name, int num_classes) {
  NetSpec spec;
  if (name == "googlenet")
    spec = models::googlenet();
  else if (name == "lenet")
    spec = models::lenet();
  else
    throw Error(fmt::format("unknown network '{}': use googlenet or lenet", name));
  // DIGITS drops Accuracy layers whose top_k exceeds the class count (a 2-class top-5 is 100 %).
  std::erase_if(spec.layers, [&](const LayerSpec& l) {
    const auto* a = std::get_if<AccuracyParams>(&l.params);
    return a && a->top_k > num_classes;
  });
  return spec;
}

// The job's console and train.log: every line goes to both.
class JobLog {
 public:
  void open(const fs::path& file) { f_ = std::fopen(file.c_str(), "a"); }
  ~JobLog() {
    if (f_) std::fclose(f_);
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> f, Args&&... args) {
    write(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> f, Args&&... args) {
    write(LogLevel::kWarn, fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  void write(LogLevel level, const std::string& s) {
    log_line(level, s);
    if (!f_) return;
    const std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
    std::fprintf(f_, "%s %s %s\n", stamp, level == LogLevel::kWarn ? "W" : "I", s.c_str());
    std::fflush(f_);
  }
  std::FILE* f_ = nullptr;
};

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

json solver_json(const SolverSettings& s) {
  return {{"base_lr", s.lr.base_lr},
          {"lr_policy", lr_policy_name(s.lr.policy)},
          {"gamma", s.lr.gamma},
          {"power", s.lr.power},
          {"stepsize", s.lr.stepsize},
          {"stepvalue", s.lr.stepvalues},
          {"max_iter", s.max_iter},
          {"momentum", s.momentum},
          {"weight_decay", s.weight_decay},
          {"snapshot", s.snapshot},
          {"test_interval", s.test_interval},
          {"test_iter", s.test_iter},
          {"display", s.display},
          {"train_iter", s.train_iter}};
}

// The settings that define the job (what --resume restores), as job.json.
json job_json(const TrainConfig& c, const SolverSettings& s, const data::DatasetInfo& ds, int classes,
              const data::RecordShape& shape, int crop, const std::string& precision) {
  json form = {{"epochs", c.form.epochs},
               {"snapshot_interval", c.form.snapshot_interval},
               {"val_interval", c.form.val_interval},
               {"batch_size", c.form.batch_size},
               {"val_batch_size", c.form.val_batch_size},
               {"base_lr", c.form.base_lr},
               {"lr_policy", lr_policy_name(c.form.policy)},
               {"step_percent", c.form.step_percent},
               {"gamma", c.form.gamma},
               {"power", c.form.power},
               {"multistep_percents", c.form.multistep_percents}};
  return {{"version", 1},
          {"name", fs::path(c.job_dir).filename().string()},
          {"network", c.network},
          {"created", utc_now()},
          {"dataset", fs::absolute(c.dataset_dir).string()},
          {"num_classes", classes},
          {"image_dims", {shape.height, shape.width, shape.channels}},
          {"resize_mode", ds.resize_mode.empty() ? "squash" : ds.resize_mode},
          {"crop_size", crop},
          {"mean", c.mean},
          {"batch_size", s.batch_size},
          {"val_batch_size", s.val_batch_size},
          {"epochs", c.form.epochs},
          {"seed", c.seed},
          {"precision", precision},
          {"deterministic", c.deterministic},
          {"gpus", c.gpus},
          {"max_iter_override", c.max_iter},
          {"display_override", c.display},
          {"blob_format", blob_format_name(c.blob_format)},
          {"weights", c.weights},
          {"form", form},
          {"solver", solver_json(s)}};
}

void check_job_dir_for_new_job(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error(fmt::format("--output {} exists and is not a folder", dir.string()));
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    throw Error(
        fmt::format("--output {} is not empty: add --resume to continue the job in it, or choose a new "
                    "folder",
                    dir.string()));
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create the job folder {}: {}", dir.string(), ec.message()));
  const fs::path probe = dir / ".write_test";
  std::FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) throw Error(fmt::format("the job folder {} is not writable", dir.string()));
  std::fclose(f);
  fs::remove(probe, ec);
}

void copy_atomic(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read {}", from.string()));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file_atomic(to, bytes);
}

// Output tops of one element (losses, accuracies) of a plan, in layer order.
std::vector<std::string> scalar_tops(const NetPlan& p) {
  std::vector<std::string> out;
  for (const BlobPlan& b : p.blobs)
    if (b.is_output && b.shape.count() == 1) out.push_back(b.name);
  return out;
}

std::string fmt_means(const std::vector<std::pair<std::string, double>>& v) {
  std::string s;
  for (const auto& [name, x] : v) {
    if (!s.empty()) s += ", ";
    const bool acc = is_accuracy_top(name);
    s += acc ? fmt::format("{} {:.2f}%", name, 100 * x) : fmt::format("{} {:.4f}", name, x);
  }
  return s;
}

double value_of(const std::vector<std::pair<std::string, double>>& v, const std::string& name) {
  for (const auto& [n, x] : v)
    if (n == name) return x;
  return NAN;
}

std::string size_text(std::uintmax_t bytes) {
  return bytes >= (1u << 20) ? fmt::format("{:.1f} MB", double(bytes) / 1e6)
                             : fmt::format("{} KB", bytes / 1000);
}

}  // namespace

TrainConfig read_job_config(const std::string& job_dir) {
  const fs::path file = fs::path(job_dir) / "job.json";
  std::ifstream f(file);
  if (!f)
    throw Error(fmt::format("{} is not a training job folder (no job.json); train into it first", job_dir));
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{} is not valid JSON: {}", file.string(), e.what()));
  }
  TrainConfig c;
  try {
    c.job_dir = job_dir;
    c.dataset_dir = j.at("dataset");
    c.network = j.at("network");
    c.gpus = j.at("gpus").get<std::vector<int>>();
    c.precision = j.at("precision");
    c.seed = j.at("seed");
    c.deterministic = j.value("deterministic", false);
    c.mean = j.at("mean");
    c.crop = j.at("crop_size");
    c.max_iter = j.value("max_iter_override", std::int64_t(0));
    c.display = j.value("display_override", std::int64_t(0));
    c.blob_format = parse_blob_format(j.value("blob_format", std::string("compatible")));
    c.weights = j.value("weights", std::string());
    const json& f2 = j.at("form");
    c.form.epochs = f2.at("epochs");
    c.form.snapshot_interval = f2.at("snapshot_interval");
    c.form.val_interval = f2.at("val_interval");
    c.form.batch_size = f2.at("batch_size");
    c.form.val_batch_size = f2.at("val_batch_size");
    c.form.base_lr = f2.at("base_lr");
    c.form.policy = parse_lr_policy(f2.at("lr_policy"));
    c.form.step_percent = f2.at("step_percent");
    c.form.gamma = f2.at("gamma");
    c.form.power = f2.at("power");
    c.form.multistep_percents = f2.at("multistep_percents").get<std::vector<double>>();
  } catch (const json::exception& e) {
    throw Error(fmt::format("{} lacks a setting the job needs ({})", file.string(), e.what()));
  }
  return c;
}

TrainResult train_job(TrainConfig c, const std::atomic<bool>* stop) {
  const fs::path job(c.job_dir);
  if (c.resume) {
    TrainConfig saved = read_job_config(c.job_dir);
    if (!c.gpus.empty() || saved.gpus.empty()) saved.gpus = c.gpus;  // a resume may move to other GPUs
    saved.loader_threads = c.loader_threads;
    saved.graph = c.graph;
    saved.stop_at = c.stop_at;
    saved.resume = true;
    c = saved;
  }

  // ---- the dataset -------------------------------------------------------------------------
  if (c.dataset_dir.empty()) throw Error("no dataset folder given (--dataset DIR)");
  if (!fs::is_directory(c.dataset_dir))
    throw Error(fmt::format("dataset folder {} does not exist", c.dataset_dir));
  const data::DatasetInfo ds = data::open_dataset(c.dataset_dir);
  if (ds.train_count == 0) throw Error(fmt::format("{} holds no training records", ds.train_db));
  if (ds.labels.size() < 2)
    throw Error(fmt::format("{}/labels.txt lists {} class(es); classification needs at least 2",
                            c.dataset_dir, ds.labels.size()));
  const int classes = int(ds.labels.size());
  const data::RecordShape shape = data::first_record_shape(ds.train_db);
  if (!ds.val_db.empty() && ds.val_count > 0) {
    const data::RecordShape vs = data::first_record_shape(ds.val_db);
    if (vs.height != shape.height || vs.width != shape.width || vs.channels != shape.channels)
      throw Error(
          fmt::format("train_db records are {}x{}x{} but val_db records are {}x{}x{}: both must have "
                      "one size (ingest them with the same --width/--height/--channels)",
                      shape.height, shape.width, shape.channels, vs.height, vs.width, vs.channels));
  }
  for (const std::string& db : {ds.train_db, ds.val_db}) {
    if (db.empty()) continue;
    const data::LabelScan ls = data::scan_labels(db);
    if (ls.records > 0 && (ls.min_label < 0 || ls.max_label >= classes))
      throw Error(
          fmt::format("{} holds records with label {} but labels.txt lists {} classes (0..{}): the "
                      "dataset's labels.txt does not match its records",
                      db, ls.min_label < 0 ? ls.min_label : ls.max_label, classes, classes - 1));
  }
  NetSpec spec = network_spec(c.network, classes);
  const DataLayerSpec* train_layer = spec.data_layer(Stage::kTrain);
  const DataLayerSpec* val_layer = spec.data_layer(Stage::kVal);
  const int crop = c.crop > 0 ? c.crop : (train_layer ? train_layer->crop_size : 0);
  if (crop > shape.height || crop > shape.width)
    throw Error(
        fmt::format("crop size {} is larger than the {}x{} records", crop, shape.height, shape.width));
  std::vector<float> mean_chw, mean_values;
  if (c.mean == "image" || c.mean == "pixel") {
    if (ds.mean.chw.empty())
      throw Error(fmt::format("{} has no mean.binaryproto: use --mean none, or ingest with imagenet_ingest",
                              c.dataset_dir));
    if (ds.mean.channels != shape.channels || ds.mean.height != shape.height || ds.mean.width != shape.width)
      throw Error(fmt::format("mean.binaryproto is {}x{}x{} but the records are {}x{}x{}", ds.mean.height,
                              ds.mean.width, ds.mean.channels, shape.height, shape.width, shape.channels));
    if (c.mean == "image") {
      mean_chw = ds.mean.chw;
    } else {  // DIGITS "pixel": the per-channel mean of the mean image
      const std::size_t plane = std::size_t(shape.height) * shape.width;
      for (int ch = 0; ch < shape.channels; ++ch) {
        double sum = 0;
        for (std::size_t i = 0; i < plane; ++i) sum += ds.mean.chw[ch * plane + i];
        mean_values.push_back(float(sum / double(plane)));
      }
    }
  } else if (c.mean != "none") {
    throw Error(fmt::format("--mean must be image, pixel or none, got '{}'", c.mean));
  }

  // ---- the solver (DIGITS' arithmetic) --------------------------------------------------------
  const std::int64_t n_val = ds.val_db.empty() ? 0 : ds.val_count;
  SolverSettings s = digits_solver(c.form, ds.train_count, n_val, train_layer ? train_layer->batch_size : 0,
                                   val_layer ? val_layer->batch_size : 0);
  if (c.max_iter > 0) {  // keeps the percent-of-training parameters relative to the new length
    DigitsSolverForm f = c.form;
    f.epochs = (double(c.max_iter) + 0.5) / double(s.train_iter);
    s = digits_solver(f, ds.train_count, n_val, train_layer ? train_layer->batch_size : 0,
                      val_layer ? val_layer->batch_size : 0);
  }
  if (c.display > 0) s.display = c.display;
  if (s.max_iter <= 0) throw Error("nothing to train: 0 iterations (raise --epochs)");

  // ---- the device ------------------------------------------------------------------------------
  if (c.gpus.size() > 1)
    throw Error("several GPUs (data parallel training) are not available yet: use one GPU (--gpus 0)");
  const bool on_gpu = !c.gpus.empty();
  std::string precision = c.precision;
  BackendConfig bc;
  bc.spec = spec;
  bc.num_classes = classes;
  bc.batch = s.batch_size;
  bc.val_batch = n_val > 0 ? s.val_batch_size : 0;
  bc.channels = shape.channels;
  bc.src_h = shape.height;
  bc.src_w = shape.width;
  bc.crop = crop;
  bc.scale = train_layer ? train_layer->scale : 1.f;
  bc.mean_chw = mean_chw;
  bc.mean_values = mean_values;
  if (!c.resume && c.seed == 0) c.seed = std::random_device{}() | 1;  // DIGITS: blank seed = random
  bc.dropout_seed = c.seed;
  if (on_gpu) {
    const int dev = c.gpus[0];
    if (dev < 0 || dev >= gpu_count())
      throw Error(gpu_count() == 0 ? fmt::format("--gpus {}: {}", dev, no_gpu_reason())
                                   : fmt::format("--gpus {}: this machine has {} GPU(s) (0..{})", dev,
                                                 gpu_count(), gpu_count() - 1));
    bc.device = dev;
    bc.gpu = recommended_options(dev);
    if (precision == "bf16") {
      const auto g = list_gpus();
      if (g[dev].cc_major < 8)
        throw Error(
            fmt::format("GPU {} ({}) has no bf16 tensor cores: use --precision fp32", dev, g[dev].name));
      bc.gpu.dtype = kernels::DType::kBF16;
    } else if (precision == "fp32") {
      bc.gpu.dtype = kernels::DType::kF32;
    } else if (precision != "auto") {
      throw Error(fmt::format("--precision must be auto, bf16 or fp32, got '{}'", precision));
    }
    precision = kernels::dtype_name(bc.gpu.dtype);
    bc.gpu.deterministic = c.deterministic;
    bc.graph = c.graph;
  } else {
    if (precision == "bf16") throw Error("the CPU reference trains in fp32: use --precision fp32 or auto");
    precision = "fp32";
  }

  // ---- the job folder --------------------------------------------------------------------------
  std::optional<SnapshotFiles> resume_from;
  if (c.resume) {
    resume_from = latest_resumable(job);
    if (!resume_from)
      throw Error(
          fmt::format("--resume: {} has no snapshot with a solver state to continue from; start the job "
                      "again in a new folder",
                      c.job_dir));
  } else {
    check_job_dir_for_new_job(job);
  }
  JobLog out;
  out.open(job / "train.log");

  std::unique_ptr<TrainBackend> backend = on_gpu ? make_gpu_backend(bc) : make_cpu_backend(bc);
  const NetPlan& plan = backend->train_plan();
  const NetPlan val_plan = bc.val_batch > 0 ? plan_val_net(bc) : NetPlan{};

  if (!c.resume) {
    write_file_atomic(job / "job.json", job_json(c, s, ds, classes, shape, crop, precision).dump(4) + "\n");
    copy_atomic(fs::path(c.dataset_dir) / "labels.txt", job / "labels.txt");
    if (fs::exists(fs::path(c.dataset_dir) / "mean.binaryproto"))
      copy_atomic(fs::path(c.dataset_dir) / "mean.binaryproto", job / "mean.binaryproto");
    DataSources src;
    src.train_db = fs::absolute(ds.train_db).string();
    src.val_db = ds.val_db.empty() ? "" : fs::absolute(ds.val_db).string();
    if (c.mean == "image") src.mean_file = fs::absolute(job / "mean.binaryproto").string();
    src.mean_value = mean_values;
    src.batch_size = s.batch_size;
    src.val_batch_size = s.val_batch_size;
    src.crop_size = crop;
    src.channels = shape.channels;
    src.height = shape.height;
    src.width = shape.width;
    write_file_atomic(job / "train_val.prototxt",
                      net_prototxt(net_parameter(spec, NetFile::kTrainVal, classes, &src)));
    write_file_atomic(job / "deploy.prototxt",
                      net_prototxt(net_parameter(spec, NetFile::kDeploy, classes, &src)));
    write_file_atomic(job / "original.prototxt",
                      net_prototxt(net_parameter(spec, NetFile::kOriginal, classes, &src)));
    SolverFileOptions so;
    so.gpu = on_gpu;
    so.random_seed = std::int64_t(c.seed & 0x7fffffffffffffffULL);
    write_file_atomic(job / "solver.prototxt", solver_prototxt(s, so));
  }

  out.info("job {}: {} on {} ({} train / {} val records of {}x{}x{}, {} classes)", job.string(), c.network,
           c.dataset_dir, ds.train_count, n_val, shape.height, shape.width, shape.channels, classes);
  out.info("device: {}", backend->describe());
  for (const std::string& line : {backend->memory_report()}) out.info("memory: {}", line);
  out.info(
      "solver: base_lr {} policy {}{} momentum {} weight_decay {} batch {} (val {}) | {} iterations per "
      "epoch, "
      "max_iter {} ({} epochs), validation every {} iterations ({} batches), snapshot every {}, display "
      "every {}, "
      "seed {}",
      s.lr.base_lr, lr_policy_name(s.lr.policy),
      s.lr.policy == LrPolicy::kStep ? fmt::format(" stepsize {} gamma {}", s.lr.stepsize, s.lr.gamma) : "",
      s.momentum, s.weight_decay, s.batch_size, s.val_batch_size, s.train_iter, s.max_iter,
      double(s.max_iter) / double(s.train_iter), s.test_interval, s.test_iter, s.snapshot, s.display, c.seed);
  const auto drops = s.lr_drops();
  if (!drops.empty()) {
    std::string d;
    for (std::int64_t it : drops)
      d += fmt::format("{}{} (epoch {:.2f}, lr {:g})", d.empty() ? "" : ", ", it,
                       double(it) / double(s.train_iter), s.lr.rate(it));
    out.info("learning rate drops at iteration {}", d);
  }

  // ---- parameters: fresh, imported, or the snapshot's ---------------------------------------------
  std::int64_t start_iter = 0;
  double wall_before = 0;
  std::int64_t corrupt_before = 0;
  std::vector<float> params(plan.param_elems), momentum(plan.param_elems);
  if (resume_from) {
    const SolverStateInfo info = read_solverstate(resume_from->solverstate, plan, momentum);
    if (info.train_records != ds.train_count || info.val_records != n_val ||
        info.batch_size != s.batch_size || info.max_iter != s.max_iter || info.seed != c.seed)
      throw Error(
          fmt::format("--resume: {} was written for another dataset or schedule ({} train / {} val "
                      "records, batch {}, max_iter {}; now {} / {}, {}, {})",
                      resume_from->solverstate.string(), info.train_records, info.val_records,
                      info.batch_size, info.max_iter, ds.train_count, n_val, s.batch_size, s.max_iter));
    const ImportReport r = import_params(read_caffemodel(resume_from->caffemodel.string()), plan, params);
    if (!r.skipped_shape.empty() || !r.missing.empty())
      throw Error(fmt::format("--resume: {} does not fit the job's net ({} layers differ, {} missing)",
                              resume_from->caffemodel.string(), r.skipped_shape.size(), r.missing.size()));
    backend->set_params(params);
    backend->set_momentum(momentum);
    start_iter = info.iter;
    wall_before = info.wall_s;
    corrupt_before = info.corrupt_skipped;
    out.info("resuming from {} (iteration {}, epoch {:.2f})", resume_from->caffemodel.filename().string(),
             start_iter, double(start_iter) / double(s.train_iter));
  } else {
    backend->init_params(c.seed);
    if (!c.weights.empty()) {
      backend->get_params(params);
      const ImportReport r = load_weights(c.weights, plan, params);
      backend->set_params(params);
      out.info(
          "initialised {} layers from {}{}", r.loaded.size(), c.weights,
          r.skipped_shape.empty() ? "" : fmt::format(" ({} skipped: shapes differ)", r.skipped_shape.size()));
    }
  }

  // ---- data ---------------------------------------------------------------------------------------
  data::HostAllocator alloc;
  if (on_gpu) {
    alloc.alloc = [](std::size_t n) {
      void* p = nullptr;
      CUDA_CHECK(cudaHostAlloc(&p, n, cudaHostAllocDefault));
      return p;
    };
    alloc.free = [](void* p) { cudaFreeHost(p); };
  }
  data::LoaderOptions lo;
  lo.db = ds.train_db;
  lo.mode = data::LoaderMode::kTrain;
  lo.batch = s.batch_size;
  lo.crop = crop;
  lo.mirror = train_layer ? train_layer->mirror : false;
  lo.seed = c.seed;
  lo.threads = c.loader_threads;
  lo.height = shape.height, lo.width = shape.width, lo.channels = shape.channels;
  data::BatchLoader train_loader(lo, alloc);
  std::unique_ptr<data::BatchLoader> val_loader;
  if (bc.val_batch > 0) {
    data::LoaderOptions vo = lo;
    vo.db = ds.val_db;
    vo.mode = data::LoaderMode::kVal;
    vo.batch = s.val_batch_size;
    vo.mirror = false;
    val_loader = std::make_unique<data::BatchLoader>(vo, alloc);
  }
  // Pending batch releases point into the loaders: the backend finishes them before the
  // loaders go away, on every way out of this function.
  struct DrainGuard {
    TrainBackend* b;
    ~DrainGuard() {
      try {
        b->drain();
      } catch (...) {  // already reported where it happened
      }
    }
  } drain_guard{backend.get()};

  // ---- metrics and report ------------------------------------------------------------------------
  std::vector<std::string> columns = scalar_tops(plan);
  for (const std::string& t : scalar_tops(val_plan))
    if (std::find(columns.begin(), columns.end(), t) == columns.end()) columns.push_back(t);
  MetricsLog metrics(job.string(), columns, resume_from ? start_iter : -1);
  ReportInfo ri;
  ri.job_name = job.filename().string();
  ri.network = c.network;
  ri.dataset = c.dataset_dir;
  ri.device = backend->describe();
  ri.precision = precision;
  ri.epochs = double(s.max_iter) / double(s.train_iter);
  ri.max_iter = s.max_iter;
  ri.settings = {{"base_lr", fmt::format("{:g}", s.lr.base_lr)},
                 {"lr_policy", lr_policy_name(s.lr.policy)},
                 {"stepsize", std::to_string(s.lr.stepsize)},
                 {"gamma", fmt::format("{:g}", s.lr.gamma)},
                 {"momentum", fmt::format("{:g}", s.momentum)},
                 {"weight_decay", fmt::format("{:g}", s.weight_decay)},
                 {"batch_size", std::to_string(s.batch_size)},
                 {"val_batch_size", std::to_string(s.val_batch_size)},
                 {"iterations per epoch", std::to_string(s.train_iter)},
                 {"max_iter", std::to_string(s.max_iter)},
                 {"crop", std::to_string(crop)},
                 {"mean", c.mean},
                 {"seed", std::to_string(c.seed)}};
  TrainResult result;
  result.max_iter = s.max_iter;
  if (resume_from) result.last_snapshot = resume_from->caffemodel.string();
  auto report = [&]() {
    ri.last_snapshot = result.last_snapshot.empty() ? "" : fs::path(result.last_snapshot).filename().string();
    try {
      write_report(job.string(), metrics.points(), ri);
    } catch (const Error& e) {
      out.warn("could not write the report: {}", e.what());
    }
  };

  // ---- the loop ------------------------------------------------------------------------------------
  const auto t_run = Clock::now();
  double val_seconds = 0, last_val_seconds = 0;
  std::int64_t it = start_iter;
  auto epoch_of = [&](std::int64_t i) { return double(i) / double(s.train_iter); };
  auto wall = [&]() { return wall_before + since(t_run); };
  std::int64_t last_val_iter = -1;
  for (const MetricPoint& p : metrics.points())
    if (p.phase == "val") last_val_iter = std::max(last_val_iter, p.iteration);

  auto validate = [&](std::int64_t at) {
    const auto t0 = Clock::now();
    backend->val_begin();
    val_loader->start(0);
    for (std::int64_t k = 0; k < val_loader->batches_per_pass(); ++k) {
      const data::Batch& b = val_loader->next();
      backend->val_batch(b, [&l = *val_loader, &b] { l.release(b); });
    }
    OutputSums sums = backend->val_sums();
    for (auto& [name, v] : sums) v /= double(n_val);
    last_val_seconds = since(t0);
    val_seconds += last_val_seconds;
    MetricPoint p{
        "val",  at,  epoch_of(at), s.lr.rate(std::min(at, s.max_iter - 1)), n_val / last_val_seconds,
        wall(), sums};
    metrics.append(p);
    last_val_iter = at;
    result.final_val = sums;
    out.info("validation at epoch {:.2f} (iteration {}, {} images, {:.1f} s): {}", epoch_of(at), at, n_val,
             last_val_seconds, fmt_means(sums));
    report();
  };

  std::int64_t written_snapshot = -1;
  auto snapshot = [&](std::int64_t at) {
    backend->get_params(params);
    backend->get_momentum(momentum);
    for (float v : params)
      if (!std::isfinite(v))
        throw Error(
            fmt::format("the weights hold NaN/inf at iteration {} (epoch {:.2f}): training diverged; no "
                        "snapshot written. Lower the learning rate (--base-lr, now {:g}){}",
                        at, epoch_of(at), s.lr.base_lr,
                        result.last_snapshot.empty()
                            ? ""
                            : fmt::format("; the last good snapshot is {}", result.last_snapshot)));
    SolverStateInfo info{at,
                         c.seed,
                         ds.train_count,
                         n_val,
                         s.batch_size,
                         s.max_iter,
                         precision,
                         1,
                         corrupt_before + train_loader.corrupt_total(),
                         wall()};
    const fs::path model = write_snapshot(job, spec, plan, params, momentum, info, c.blob_format);
    result.last_snapshot = model.string();
    written_snapshot = at;
    out.info("snapshot {} ({}) at epoch {:.2f}", model.filename().string(), size_text(fs::file_size(model)),
             epoch_of(at));
  };

  if (bc.val_batch > 0 && s.test_interval > 0 && it % s.test_interval == 0 && last_val_iter != it)
    validate(it);

  train_loader.start(it);
  auto t_disp = Clock::now();
  double val_at_disp = val_seconds;
  std::int64_t disp_from = it;
  double rate_steps = 0;  // iterations per second of training (validation excluded)
  std::int64_t corrupt_reported = 0;
  while (it < s.max_iter) {
    const data::Batch& b = train_loader.next();
    for (int i = 0; i < b.n; ++i)
      if (b.labels[i] < 0 || b.labels[i] >= classes)
        throw Error(fmt::format("a training record carries label {} outside labels.txt's {} classes",
                                b.labels[i], classes));
    StepValues v;
    v.iteration = std::uint64_t(it);
    v.lr = float(s.lr.rate(it));
    v.momentum = float(s.momentum);
    v.weight_decay = float(s.weight_decay);
    backend->train_step(b, v, [&train_loader, &b] { train_loader.release(b); });
    ++it;
    const bool stopping = (stop && stop->load()) || (c.stop_at >= 0 && it >= c.stop_at && it < s.max_iter);
    if (it % s.display == 0 || it == s.max_iter || stopping) {
      OutputSums sums = backend->take_train_sums();
      const double steps = double(it - disp_from);
      for (auto& [name, x] : sums) x /= steps;
      const double dt = since(t_disp) - (val_seconds - val_at_disp);
      const double ips = dt > 0 ? steps * s.batch_size / dt : 0;
      rate_steps = dt > 0 ? steps / dt : rate_steps;
      metrics.append({"train", it, epoch_of(it), s.lr.rate(it - 1), ips, wall(), sums});
      for (const auto& [name, x] : sums)
        if (!std::isfinite(x)) {
          report();
          throw Error(
              fmt::format("{} is {} at iteration {} (epoch {:.2f}): training diverged. Lower the learning "
                          "rate (--base-lr, "
                          "now {:g}) and start again{}",
                          name, x, it, epoch_of(it), s.lr.base_lr,
                          result.last_snapshot.empty()
                              ? ""
                              : fmt::format(", or fine-tune from the last good snapshot {} (--weights)",
                                            result.last_snapshot)));
        }
      const std::int64_t vals_left = s.test_interval > 0 && bc.val_batch > 0
                                         ? (s.max_iter - 1) / s.test_interval - (it - 1) / s.test_interval
                                         : 0;
      const double eta =
          rate_steps > 0 ? double(s.max_iter - it) / rate_steps + double(vals_left) * last_val_seconds : 0;
      const double main_loss = value_of(sums, "loss");
      std::string others;
      for (const auto& [name, x] : sums)
        if (name != "loss") others += fmt::format("{}{} {:.3f}", others.empty() ? " (" : ", ", name, x);
      if (!others.empty()) others += ")";
      out.info("epoch {:.2f}/{:g} iter {}/{} loss {:.4f}{} lr {:g} {:.0f} img/s ETA {}", epoch_of(it),
               ri.epochs, it, s.max_iter,
               std::isnan(main_loss) ? sums.empty() ? NAN : sums[0].second : main_loss, others,
               s.lr.rate(it - 1), ips, format_duration(eta));
      const std::int64_t corrupt = train_loader.corrupt_total();
      if (corrupt > corrupt_reported) {
        const auto ex = train_loader.corrupt_examples();
        out.warn("{} corrupt training records skipped so far{}", corrupt,
                 ex.empty() ? "" : fmt::format(" (first: {})", ex.front()));
        corrupt_reported = corrupt;
      }
      t_disp = Clock::now();
      val_at_disp = val_seconds;
      disp_from = it;
    }
    if (stopping) {
      backend->drain();
      out.info("stop requested: finishing at iteration {} (epoch {:.2f})", it, epoch_of(it));
      if (written_snapshot != it) snapshot(it);
      report();
      result.interrupted = true;
      break;
    }
    if (bc.val_batch > 0 && s.test_interval > 0 && it % s.test_interval == 0 && it < s.max_iter) validate(it);
    if (s.snapshot > 0 && it % s.snapshot == 0 && it < s.max_iter) snapshot(it);
  }
  backend->drain();
  const double train_s = since(t_run) - val_seconds;
  if (!result.interrupted) {
    if (bc.val_batch > 0 && last_val_iter != it) validate(it);
    if (written_snapshot != it) snapshot(it);
    report();
    result.finished = true;
  }
  result.iter = it;
  result.train_seconds = wall_before + since(t_run);
  result.images_per_second = train_s > 0 ? double(it - start_iter) * s.batch_size / train_s : 0;
  result.corrupt_records = corrupt_before + train_loader.corrupt_total();
  return result;
}

}  // namespace incept

// Setting up a training job (train_internal.h): the input checks that run before training,
// the schedule, job.json and the job's Caffe files.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/atomic_file.h"
#include "engine/caffe_model.h"
#include "engine/check.h"
#include "engine/device.h"
#include "engine/job_dir.h"
#include "engine/train_internal.h"
#include "models/models.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace incept {

JobLog::~JobLog() {
  if (f_) std::fclose(f_);
}

void JobLog::open(const fs::path& file) {
  f_ = std::fopen(file.c_str(), "a");
}

void JobLog::write(LogLevel level, const std::string& s) {
  std::lock_guard lock(mu_);
  log_line(level, s);
  if (!f_) return;
  const std::time_t t = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  std::fprintf(f_, "%s %s %s\n", stamp, level == LogLevel::kWarn ? "W" : "I", s.c_str());
  std::fflush(f_);
}

namespace {

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
json job_json(const JobSetup& j) {
  const TrainConfig& c = j.c;
  const SolverSettings& s = j.s;
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
          {"num_classes", j.classes},
          {"image_dims", {j.shape.height, j.shape.width, j.shape.channels}},
          {"resize_mode", j.ds.resize_mode.empty() ? "squash" : j.ds.resize_mode},
          {"crop_size", j.crop},
          {"mean", c.mean},
          {"batch_size", s.batch_size},
          {"val_batch_size", s.val_batch_size},
          {"epochs", c.form.epochs},
          {"seed", c.seed},
          {"precision", j.precision},
          {"grad_allreduce", c.grad_allreduce},
          {"deterministic", c.deterministic},
          {"round_grads_bf16", c.round_grads_bf16},
          {"fp32_math", c.fp32_math},
          {"gpus", c.gpus},
          {"max_iter_override", c.max_iter},
          {"display_override", c.display},
          {"blob_format", blob_format_name(c.blob_format)},
          {"weights", c.weights},
          {"form", form},
          {"solver", solver_json(s)}};
}

void copy_atomic(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read {}", from.string()));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file_atomic(to, bytes);
}

}  // namespace

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

TrainConfig read_job_config(const std::string& job_dir) {
  // read_job (engine/job_dir.h) reads and checks what every reader of a job needs; the rest is
  // what only a resumed job needs.
  const JobInfo info = read_job(job_dir);
  const json& j = info.json;
  const fs::path file = info.dir / "job.json";
  TrainConfig c;
  try {
    c.job_dir = job_dir;
    c.dataset_dir = info.dataset;
    c.network = info.network;
    c.mean = info.mean;
    c.crop = info.crop_size;
    c.gpus = j.at("gpus").get<std::vector<int>>();
    c.precision = j.at("precision");
    c.grad_allreduce = j.value("grad_allreduce", std::string("fp32"));
    c.seed = j.at("seed");
    c.deterministic = j.value("deterministic", false);
    c.round_grads_bf16 = j.value("round_grads_bf16", false);
    c.fp32_math = j.value("fp32_math", std::string("strict"));  // jobs from before 3xTF32 ran strict
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

namespace {

// Throws "GPU d (name) has no <missing>" for the first of `gpus` below compute capability 8.0
// (INCEPT_CC_LIMIT applies): bf16 and the 3xTF32 kernel need its tensor cores.
void require_tensor_cores(const std::vector<int>& gpus, const std::string& missing) {
  const std::vector<GpuInfo> all = list_gpus();
  for (int d : gpus)
    if (all[d].cc_major < 8) throw Error(fmt::format("GPU {} ({}) has no {}", d, all[d].name, missing));
}

}  // namespace

JobSetup prepare_job(TrainConfig c) {
  JobSetup j;
  if (c.resume) {
    TrainConfig saved = read_job_config(c.job_dir);
    if (!c.gpus.empty() || saved.gpus.empty()) saved.gpus = c.gpus;  // a resume may move to other GPUs
    saved.loader_threads = c.loader_threads;
    saved.keep_im2col = c.keep_im2col;  // memory vs speed, the same values either way
    saved.graph = c.graph;
    saved.stop_at = c.stop_at;
    saved.dist = c.dist;
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

  if (c.grad_allreduce != "fp32" && c.grad_allreduce != "bf16")
    throw Error(fmt::format("--grad-allreduce must be fp32 or bf16, got '{}'", c.grad_allreduce));

  // ---- the devices ------------------------------------------------------------------------------
  std::string precision = c.precision;
  if (!c.resume && c.seed == 0) c.seed = std::random_device{}() | 1;  // DIGITS: blank seed = random
  if (!c.gpus.empty()) {
    for (int dev : c.gpus)
      if (dev < 0 || dev >= gpu_count())
        throw Error(gpu_count() == 0 ? fmt::format("--gpus {}: {}", dev, no_gpu_reason())
                                     : fmt::format("--gpus {}: this machine has {} GPU(s) (0..{})", dev,
                                                   gpu_count(), gpu_count() - 1));
    const int dev = c.gpus[0];
    if (precision == "bf16") {
      require_tensor_cores(c.gpus, "bf16 tensor cores: use --precision fp32");
    } else if (precision == "auto") {
      precision = kernels::dtype_name(recommended_options(dev).dtype);
    } else if (precision != "fp32") {
      throw Error(fmt::format("--precision must be auto, bf16 or fp32, got '{}'", precision));
    }
  } else {
    if (precision == "bf16") throw Error("the CPU reference trains in fp32: use --precision fp32 or auto");
    precision = "fp32";
  }
  if (c.round_grads_bf16 && (c.gpus.empty() || precision != "fp32"))
    throw Error("--round-grads-bf16 is an experiment for fp32 training on the GPU (--precision fp32)");
  if (c.fp32_math != "auto" && c.fp32_math != "strict" && c.fp32_math != "3xtf32")
    throw Error("--fp32-math must be auto, strict or 3xtf32, got " + c.fp32_math);
  if (c.fp32_math == "3xtf32" && (c.gpus.empty() || precision != "fp32"))
    throw Error("--fp32-math 3xtf32 is the GPU's fp32 GEMM kernel: it needs --precision fp32 on a GPU");
  if (c.fp32_math == "3xtf32")
    require_tensor_cores(c.gpus, "TF32 tensor cores for --fp32-math 3xtf32: use auto or strict");
  if (c.keep_im2col && c.gpus.empty())
    throw Error("--keep-im2col is a GPU memory/speed choice: the CPU reference has no im2col rows to keep");
  j.c = c;
  j.job = fs::path(c.job_dir);
  j.ds = ds;
  j.shape = shape;
  j.spec = spec;
  j.classes = classes;
  j.crop = crop;
  j.mirror = train_layer ? train_layer->mirror : false;
  j.scale = train_layer ? train_layer->scale : 1.f;
  j.n_val = n_val;
  j.s = s;
  j.mean_chw = std::move(mean_chw);
  j.mean_values = std::move(mean_values);
  j.precision = precision;
  return j;
}

BackendConfig backend_template(const JobSetup& j) {
  BackendConfig bc;
  bc.spec = j.spec;
  bc.num_classes = j.classes;
  bc.batch = j.s.batch_size;
  bc.val_batch = j.n_val > 0 ? j.s.val_batch_size : 0;
  bc.channels = j.shape.channels;
  bc.src_h = j.shape.height;
  bc.src_w = j.shape.width;
  bc.crop = j.crop;
  bc.scale = j.scale;
  bc.mean_chw = j.mean_chw;
  bc.mean_values = j.mean_values;
  bc.dropout_seed = j.c.seed;
  if (!j.c.gpus.empty()) {
    bc.device = j.c.gpus[0];
    bc.gpu =
        recommended_options(bc.device, j.precision == "bf16" ? kernels::DType::kBF16 : kernels::DType::kF32);
    bc.gpu.deterministic = j.c.deterministic;
    bc.gpu.round_grads_bf16 = j.c.round_grads_bf16;
    bc.gpu.keep_im2col = j.c.keep_im2col;
    if (j.c.fp32_math != "auto") bc.gpu.tf32x3 = j.c.fp32_math == "3xtf32";
    bc.graph = j.c.graph;
  }
  return bc;
}

void write_job_files(const JobSetup& j) {
  const fs::path& job = j.job;
  const TrainConfig& c = j.c;
  const data::DatasetInfo& ds = j.ds;
  write_file_atomic(job / "job.json", job_json(j).dump(4) + "\n");
  copy_atomic(fs::path(c.dataset_dir) / "labels.txt", job / "labels.txt");
  if (fs::exists(fs::path(c.dataset_dir) / "mean.binaryproto"))
    copy_atomic(fs::path(c.dataset_dir) / "mean.binaryproto", job / "mean.binaryproto");
  DataSources src;
  src.train_db = fs::absolute(ds.train_db).string();
  src.val_db = ds.val_db.empty() ? "" : fs::absolute(ds.val_db).string();
  if (c.mean == "image") src.mean_file = fs::absolute(job / "mean.binaryproto").string();
  src.mean_value = j.mean_values;
  src.batch_size = j.s.batch_size;
  src.val_batch_size = j.s.val_batch_size;
  src.crop_size = j.crop;
  src.channels = j.shape.channels;
  src.height = j.shape.height;
  src.width = j.shape.width;
  write_file_atomic(job / "train_val.prototxt",
                    net_prototxt(net_parameter(j.spec, NetFile::kTrainVal, j.classes, &src)));
  write_file_atomic(job / "deploy.prototxt",
                    net_prototxt(net_parameter(j.spec, NetFile::kDeploy, j.classes, &src)));
  write_file_atomic(job / "original.prototxt",
                    net_prototxt(net_parameter(j.spec, NetFile::kOriginal, j.classes, &src)));
  SolverFileOptions so;
  so.gpu = !c.gpus.empty();
  so.random_seed = std::int64_t(c.seed & 0x7fffffffffffffffULL);
  write_file_atomic(job / "solver.prototxt", solver_prototxt(j.s, so));
}

}  // namespace incept

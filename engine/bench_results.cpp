// The benchmark table of benchmarks/run.sh (bench_results.h).
#include "engine/bench_results.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/bar_chart.h"
#include "engine/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace incept::bench {
namespace {

json parse(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not JSON ({})", what, e.what()));
  }
}

double num(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

std::string str(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot read {}", p.string()));
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// 91900 -> 9.19.0 (cuDNN's integer version).
std::string cudnn_version(const std::string& v) {
  if (v.empty() || v.find('.') != std::string::npos) return v;
  const long n = std::stol(v);
  return fmt::format("{}.{}.{}", n / 10000, n % 10000 / 100, n % 100);
}

// The precision column of an fp32 GPU row by its GEMM arithmetic (bench_train_step's fp32_math,
// train_googlenet's --fp32-math as it resolved): 3xTF32 (fp32 accuracy on TF32 tensor cores),
// FMA (cuBLAS's strict fp32, no tensor cores) or plain TF32.
std::string fp32_precision(const std::string& math) {
  if (math == "3xtf32") return "fp32 (3xTF32)";
  if (math == "strict") return "fp32 (FMA)";
  if (math == "tf32") return "fp32 (TF32)";
  throw Error("unknown fp32 GEMM arithmetic \"" + math + "\" (3xtf32, strict or tf32)");
}

bool training(Kind k) {
  return k == Kind::kStep || k == Kind::kJob || k == Kind::kPeer || k == Kind::kReference;
}

std::string fixed(double v, int decimals) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, decimals) : "-";
}

std::string rate(double v) {
  return chart::format_value(v);
}

std::string gpu_text(int gpus) {
  return gpus == 0 ? "CPU" : std::to_string(gpus);
}

// ---- grouping: the GPU count and global batch, then the published references ----------------

std::string group_title(const Row& r) {
  if (r.kind == Kind::kReference) return "Published: DIGITS / NVIDIA Caffe on Tesla P100";
  if (r.gpus == 0) return "CPU: the reference implementation";
  return fmt::format("{} GPU{}, global batch {}{}", r.gpus, r.gpus > 1 ? "s" : "", r.global_batch,
                     r.gpus > 1 ? fmt::format(" ({} per GPU)", r.batch_per_gpu) : "");
}

int system_order(const std::string& s) {
  return s == "incept" ? 0 : s == "PyTorch" ? 1 : 2;
}

// Training rows in table order: by group (GPUs ascending, CPU, references), within a group the
// larger global batch first, incept before PyTorch, faster first.
std::vector<const Row*> training_rows(const Results& r) {
  std::vector<const Row*> out;
  for (const Row& row : r.rows)
    if (training(row.kind)) out.push_back(&row);
  auto group_key = [](const Row* a) {
    return std::tuple(a->kind == Kind::kReference ? 2 : a->gpus == 0 ? 1 : 0, a->gpus, -a->global_batch);
  };
  std::stable_sort(out.begin(), out.end(), [&](const Row* a, const Row* b) {
    if (group_key(a) != group_key(b)) return group_key(a) < group_key(b);
    if (system_order(a->system) != system_order(b->system))
      return system_order(a->system) < system_order(b->system);
    const double x = std::isfinite(a->img_s) ? a->img_s : -1, y = std::isfinite(b->img_s) ? b->img_s : -1;
    return x > y;
  });
  return out;
}

// ---- a plain table, as aligned text or Markdown ---------------------------------------------

struct Table {
  std::vector<std::string> head;
  std::vector<bool> right;
  std::vector<std::vector<std::string>> rows;  // a row of one cell: a group heading

  std::string text() const {
    std::vector<std::size_t> w(head.size(), 0);
    for (std::size_t c = 0; c < head.size(); ++c) w[c] = head[c].size();
    for (const auto& row : rows)
      if (row.size() == head.size())
        for (std::size_t c = 0; c < row.size(); ++c) w[c] = std::max(w[c], row[c].size());
    auto line = [&](const std::vector<std::string>& cells) {
      std::string s;
      for (std::size_t c = 0; c < cells.size(); ++c) {
        const std::string pad(w[c] - std::min(w[c], cells[c].size()), ' ');
        s += (c ? "  " : "") + (right[c] ? pad + cells[c] : cells[c] + pad);
      }
      while (!s.empty() && s.back() == ' ') s.pop_back();
      return s + "\n";
    };
    std::string out = line(head);
    for (const auto& row : rows) out += row.size() == head.size() ? line(row) : "-- " + row[0] + "\n";
    return out;
  }

  std::string md() const {
    std::string out = "|";
    for (const auto& h : head) out += " " + h + " |";
    out += "\n|";
    for (bool r : right) out += r ? "---:|" : "---|";
    out += "\n";
    for (const auto& row : rows) {
      if (row.size() != head.size()) {
        out += "| **" + row[0] + "** |" + std::string(head.size() - 1, '|') + "\n";
        continue;
      }
      out += "|";
      for (const auto& c : row) out += " " + c + " |";
      out += "\n";
    }
    return out;
  }
};

Table training_table(const Results& r) {
  Table t{{"system", "configuration", "data", "GPUs", "batch/GPU", "global", "precision", "img/s", "ms/step",
           "peak MiB", "60-epoch job"},
          {false, false, false, true, true, true, false, true, true, true, true},
          {}};
  const bool runs = !r.runs.empty();
  if (runs) {
    t.head.push_back("run");
    t.right.push_back(true);
  }
  std::string group;
  for (const Row* row : training_rows(r)) {
    if (group_title(*row) != group) {
      group = group_title(*row);
      t.rows.push_back({group});
    }
    std::string job = format_duration(row->job_hours);
    if (std::isfinite(row->job_hours) && row->val_source.rfind("assumed", 0) == 0) job += " *";
    t.rows.push_back({row->system, row->what, row->data.empty() ? "-" : row->data, gpu_text(row->gpus),
                      row->batch_per_gpu ? std::to_string(row->batch_per_gpu) : "-",
                      row->global_batch ? std::to_string(row->global_batch) : "-", row->precision,
                      rate(row->img_s), fixed(row->ms_step, 2), fixed(row->peak_mib, 0), job});
    if (runs) t.rows.back().push_back(row->kind == Kind::kReference ? "-" : std::to_string(row->run + 1));
  }
  return t;
}

Table loader_table(const Results& r) {
  Table t{{"part", "configuration", "img/s", "per core", "note"}, {false, false, true, true, false}, {}};
  const bool runs = !r.runs.empty();
  if (runs) {
    t.head.push_back("run");
    t.right.push_back(true);
  }
  for (const Kind kind : {Kind::kLoader, Kind::kIngest})
    for (const Row& row : r.rows)
      if (row.kind == kind) {
        t.rows.push_back({kind == Kind::kLoader ? "loader" : "ingest", row.what, rate(row.img_s),
                          rate(row.per_core_img_s), row.note});
        if (runs) t.rows.back().push_back(std::to_string(row.run + 1));
      }
  return t;
}

std::string meta(const Results& r, const std::string& key, const std::string& fallback = "?") {
  const auto it = r.meta.find(key);
  return it == r.meta.end() || it->second.empty() ? fallback : it->second;
}

std::vector<std::string> header_lines(const Results& r) {
  std::vector<std::string> out;
  out.push_back(fmt::format("{}, commit {} (programs built from {}), {} mode{}", meta(r, "date"),
                            meta(r, "commit"), meta(r, "incept_commit"), meta(r, "mode", "gpu"),
                            r.meta.count("args") ? ", run.sh " + meta(r, "args") : ""));
  if (meta(r, "mode", "gpu") == "gpu")
    out.push_back(fmt::format("GPUs: {} x {} ({} MiB), driver {} (CUDA {}); {} x {}", meta(r, "gpu_count"),
                              meta(r, "gpu_model"), meta(r, "gpu_memory_mib"), meta(r, "driver"),
                              meta(r, "cuda_driver"), meta(r, "cores"), meta(r, "cpu")));
  else
    out.push_back(fmt::format("no GPU: {} x {}", meta(r, "cores"), meta(r, "cpu")));
  const std::string torch =
      r.meta.count("torch")
          ? fmt::format("PyTorch {} (CUDA {}, cuDNN {}, NCCL {}), torchvision {}", meta(r, "torch"),
                        meta(r, "torch_cuda", "-"), meta(r, "torch_cudnn", "-"), meta(r, "torch_nccl", "-"),
                        meta(r, "torchvision", "-"))
          : std::string("PyTorch not run");
  out.push_back(fmt::format("incept: CUDA runtime {}, cuDNN {}, NCCL {}; {}",
                            meta(r, "incept_cuda_runtime", "-"), meta(r, "incept_cudnn", "-"),
                            meta(r, "incept_nccl", "-"), torch));
  if (r.meta.count("dataset")) out.push_back("real data: " + meta(r, "dataset"));
  if (!r.runs.empty()) {
    out.push_back(
        fmt::format("{} runs merged (the first line above is run 1's); a configuration measured in "
                    "several keeps the row of the first run that has it; the run column says which run "
                    "measured each row",
                    r.runs.size()));
    for (const std::string& line : r.runs) out.push_back(line);
  }
  return out;
}

std::vector<std::string> explanation_lines() {
  return {
      fmt::format("60-epoch job = DIGITS' ImageNet job: ({} x {} training images / training img/s + {} x {} "
                  "validation images / validation img/s) / 3600 h (75 % / 25 % of ImageNet-1k's {} images). "
                  "Validation rate: measured by train_googlenet at the same GPUs and precision where it ran, "
                  "else assumed {:g}x the training rate (marked *).",
                  kJobEpochs, rate(kJobTrainImages), kJobEpochs, rate(kJobValImages), rate(kImagenetImages),
                  kAssumedValSpeedup),
      "img/s: median step time (CUDA events) for synthetic steps and PyTorch; wall clock with the loader in "
      "the "
      "loop for LMDB rows; for train_googlenet jobs, the median rate between progress points with no "
      "validation pass between them.",
      "peak MiB per GPU: incept synthetic steps, everything the net allocates (arenas, workspaces; all of it "
      "before the first step); incept LMDB-fed steps, the device memory in use beyond the CUDA context at "
      "its "
      "peak (cudaMemGetInfo, sampled); train_googlenet jobs, nvidia-smi's memory.used during the job minus "
      "before it (context and NCCL included); PyTorch, torch.cuda.max_memory_allocated; CPU, the host "
      "arenas.",
      "precision, fp32 rows: incept's GEMMs in 3xTF32 (its tensor-core kernel with fp32's accuracy; the "
      "default on compute capability 8.0+) or FMA (cuBLAS's strict fp32, --fp32-math strict); PyTorch's with "
      "TF32 off.",
  };
}

void add_meta(Results* into, const std::string& key, const std::string& value) {
  if (into && !value.empty() && !into->meta.count(key)) into->meta[key] = value;
}

}  // namespace

double job_hours(double train_img_s, double val_img_s) {
  if (!(train_img_s > 0) || !(val_img_s > 0)) return NAN;
  return (double(kJobEpochs) * double(kJobTrainImages) / train_img_s +
          double(kJobEpochs) * double(kJobValImages) / val_img_s) /
         3600.0;
}

std::string format_duration(double hours) {
  if (!std::isfinite(hours)) return "-";
  if (hours < 1) return fmt::format("{:.0f} min", hours * 60);
  if (hours < 48) return fmt::format("{:.1f} h", hours);
  if (hours < 24 * 365) return fmt::format("{:.1f} d", hours / 24);
  return fmt::format("{:.1f} y", hours / (24 * 365));
}

std::map<std::string, std::string> parse_key_values(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

std::vector<Row> rows_from_step_json(const std::string& text, const std::string& data, Results* into) {
  const json j = parse(text, "bench_train_step JSON");
  if (!j.contains("results")) throw Error("bench_train_step JSON: no \"results\"");
  add_meta(into, "incept_commit", str(j, "commit"));
  if (j.contains("versions")) {
    add_meta(into, "incept_cuda_runtime", str(j["versions"], "cuda_runtime"));
    add_meta(into, "incept_cudnn", str(j["versions"], "cudnn"));
    add_meta(into, "incept_nccl", str(j["versions"], "nccl"));
  }
  std::vector<Row> rows;
  for (const json& e : j["results"]) {
    Row r;
    r.kind = Kind::kStep;
    r.system = "incept";
    const std::string mode = str(e, "mode");
    const std::string device = str(e, "device").empty() ? "gpu" : str(e, "device");
    std::string source = str(e, "data");
    if (source.empty()) source = mode.find("LMDB") != std::string::npos ? "lmdb" : "synthetic";
    r.precision = str(e, "dtype").empty() ? mode.substr(0, mode.find(' ')) : str(e, "dtype");
    const std::string layout = str(e, "layout").empty()
                                   ? (mode.find("NHWC") != std::string::npos ? "NHWC" : "NCHW")
                                   : str(e, "layout");
    r.gpus = e.contains("gpus") ? e["gpus"].get<int>() : 1;
    r.batch_per_gpu = e.contains("batch_per_gpu") ? e["batch_per_gpu"].get<int>() : j.value("batch", 0);
    r.global_batch = e.contains("global_batch") ? e["global_batch"].get<int>() : r.batch_per_gpu;
    r.img_s = num(e, "img_per_s");
    r.ms_step = num(e, "ms_per_step");
    // The net's allocations where known (PyTorch's max_memory_allocated counts the same kind of
    // thing), else the memory in use at its peak.
    r.peak_mib = num(e, "arena_mib") > 0  ? num(e, "arena_mib")
                 : e.contains("peak_mib") ? num(e, "peak_mib")
                                          : num(e, "mib");
    if (device == "cpu") {
      r.what = "CPU reference step (CpuNet: transform, forward, backward, SGD)";
      r.data = "synthetic";
    } else if (source == "lmdb") {
      r.what = fmt::format("step fed by the loader (decode threads, pinned batches), {}", layout);
      r.data = data.empty() ? "LMDB" : data;
    } else {
      r.what = r.gpus > 1 ? fmt::format("step, one CUDA graph per GPU, all-reduce inside, {}", layout)
                          : fmt::format("step, one CUDA graph, {}", layout);
      r.data = "synthetic";
    }
    if (mode.find("eager") != std::string::npos) r.what += ", eager";
    // fp32's GEMM arithmetic, from the field where the JSON has it, else from the mode's words
    // (JSON from before the field: " 3xtf32" or " tf32" in the mode, otherwise FMA, as every
    // earlier fp32 GPU step ran).
    std::string math = str(e, "fp32_math");
    if (math.empty() && r.precision == "fp32" && device != "cpu")
      math = mode.find(" 3xtf32") != std::string::npos ? "3xtf32"
             : mode.find(" tf32") != std::string::npos ? "tf32"
                                                       : "strict";
    if (r.precision == "fp32" && !math.empty()) r.precision = fp32_precision(math);
    rows.push_back(r);
  }
  return rows;
}

std::vector<Row> rows_from_peer_json(const std::string& text, Results* into) {
  const json j = parse(text, "peer_pytorch.py JSON");
  if (!j.contains("results")) throw Error("peer_pytorch.py JSON: no \"results\"");
  if (j.contains("meta")) {
    const json& m = j["meta"];
    add_meta(into, "torch", str(m, "torch"));
    add_meta(into, "torch_cuda", str(m, "cuda"));
    add_meta(into, "torch_cudnn", cudnn_version(str(m, "cudnn")));
    add_meta(into, "torchvision", str(m, "torchvision"));
  }
  std::vector<Row> rows;
  for (const json& e : j["results"]) {
    const std::string name = str(e, "name");
    if (e.contains("error")) {
      if (into) into->notes.push_back(fmt::format("PyTorch {}: {}", name, str(e, "error")));
      continue;
    }
    add_meta(into, "torch_nccl", str(e, "nccl"));
    Row r;
    r.kind = Kind::kPeer;
    r.system = "PyTorch";
    r.peer = name;
    const std::string model = str(e, "model"), mode = str(e, "mode"), dtype = str(e, "dtype");
    r.what = fmt::format("{}, {}, {}{}", model == "digits" ? "DIGITS GoogLeNet" : "torchvision googlenet",
                         mode == "eager"     ? "eager"
                         : mode == "compile" ? "torch.compile"
                                             : "torch.compile reduce-overhead",
                         str(e, "layout") == "cl" ? "channels_last" : "NCHW",
                         e.value("ddp", false) ? ", DDP" : "");
    r.data = "synthetic";
    r.precision = dtype == "bf16" ? "bf16 autocast" : dtype == "fp32" ? "fp32 (TF32 off)" : dtype;
    r.gpus = e.value("gpus", 1);
    if (!e.value("ddp", false)) r.gpus = 1;
    r.batch_per_gpu = e.value("batch", 0);
    r.global_batch = e.value("global_batch", r.batch_per_gpu * r.gpus);
    r.img_s = num(e, "img_per_s");
    r.ms_step = num(e, "ms_per_step");
    r.peak_mib = num(e, "peak_alloc_mib");
    if (mode != "eager" && std::isfinite(num(e, "first_step_s")))
      r.note = fmt::format("compile {:.0f} s", num(e, "first_step_s"));
    rows.push_back(r);
  }
  if (into)
    for (const json& n : j.value("not_run", json::array()))
      into->notes.push_back(
          fmt::format("PyTorch {}: not run (out of the time budget)", n.get<std::string>()));
  return rows;
}

std::vector<Row> rows_from_loader_json(const std::string& text, Results* into) {
  const json j = parse(text, "bench_loader JSON");
  if (!j.contains("results")) throw Error("bench_loader JSON: no \"results\"");
  add_meta(into, "cpu", str(j, "cpu"));
  add_meta(into, "cores", str(j, "hardware_threads"));
  std::vector<Row> rows;
  for (const json& e : j["results"]) {
    Row r;
    r.kind = Kind::kLoader;
    r.system = "incept";
    const int threads = e.value("threads", 1);
    r.threads = threads;
    r.per_core_img_s = num(e, "img_per_s_per_thread");
    r.what = fmt::format("training loader, {} decode thread{}, batch {}", threads, threads > 1 ? "s" : "",
                         j.value("batch", 0));
    r.img_s = num(e, "img_per_s");
    r.note = fmt::format("{} img per decode CPU-second; {} JPEG decode", rate(num(e, "img_per_cpu_s")),
                         str(j, "jpeg"));
    rows.push_back(r);
  }
  return rows;
}

std::vector<Row> rows_from_ingest_json(const std::string& text, Results* into) {
  const json j = parse(text, "bench_ingest JSON");
  add_meta(into, "cpu", str(j, "cpu"));
  add_meta(into, "cores", str(j, "cores"));
  add_meta(into, "ingest_server", str(j, "server"));
  Row r;
  r.kind = Kind::kIngest;
  r.system = "incept";
  r.what =
      fmt::format("imagenet_ingest over HTTP from {} on 127.0.0.1, {} images of {:.0f} KB (500x375 JPEG)",
                  str(j, "server") == "nginx" ? "nginx" : "python3 -m http.server", j.value("images", 0),
                  num(j, "kb_per_image"));
  r.img_s = num(j, "img_per_s");
  r.per_core_img_s = num(j, "img_per_s_per_core");
  r.note = fmt::format("{} cores shared with the server; {} img per ingest CPU-second; {} failures",
                       j.value("cores", 0), rate(num(j, "img_per_ingest_cpu_s")), j.value("failures", 0));
  // On 16 cores of one H200 host (2026-12-01) the same 4,000 images went 1,298 img/s from Python's
  // server and 5,284 from nginx, at about the same ingest CPU per image: the server was the limit.
  if (str(j, "server") != "nginx")
    r.note +=
        "; Python's server limits this rate (nginx serves the same tree ~4x faster: install nginx-light)";
  return {r};
}

Row row_from_job(const std::string& metrics_jsonl, const std::map<std::string, std::string>& info) {
  auto get = [&](const char* k) {
    const auto it = info.find(k);
    return it == info.end() ? std::string() : it->second;
  };
  Row r;
  r.kind = Kind::kJob;
  r.system = "incept";
  r.what = "train_googlenet job (loader, step, validation)";
  r.data = get("data").empty() ? "LMDB" : get("data");
  r.precision = get("precision");
  if (r.precision == "fp32" && !get("fp32_math").empty()) r.precision = fp32_precision(get("fp32_math"));
  r.gpus = get("gpus").empty() ? 1 : std::stoi(get("gpus"));
  r.global_batch = get("global_batch").empty() ? 0 : std::stoi(get("global_batch"));
  r.batch_per_gpu = r.gpus > 0 ? r.global_batch / r.gpus : r.global_batch;
  // Training: images over wall time between consecutive progress points with no validation pass
  // between them (the first point, which holds the warm-up, has no predecessor). Validation: the
  // passes' own rates, the first (warm-up) left out when there are more.
  std::vector<double> train, val;
  double last_iter = NAN, last_wall = NAN;
  std::istringstream in(metrics_jsonl);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const json p = parse(line, "metrics.jsonl");
    const double iter = num(p, "iteration"), wall = num(p, "wall_s");
    if (str(p, "phase") == "val") {
      if (num(p, "images_per_s") > 0) val.push_back(num(p, "images_per_s"));
      last_iter = last_wall = NAN;
      continue;
    }
    if (iter > last_iter && wall > last_wall && r.global_batch > 0)
      train.push_back((iter - last_iter) * r.global_batch / (wall - last_wall));
    last_iter = iter, last_wall = wall;
  }
  if (val.size() > 1) val.erase(val.begin());
  r.img_s = median(train);
  r.ms_step = r.global_batch > 0 && r.img_s > 0 ? 1000.0 * r.global_batch / r.img_s : NAN;
  r.peak_mib = get("peak_mib").empty() ? NAN : std::stod(get("peak_mib"));
  r.val_img_s = median(val);
  if (std::isfinite(r.val_img_s)) r.val_source = "measured";
  r.note = fmt::format("{} training intervals, {} validation passes", train.size(), val.size());
  return r;
}

std::vector<Row> reference_rows() {
  Row one;
  one.kind = Kind::kReference;
  one.system = "NVIDIA Caffe";
  one.what = "DIGITS' engine, 1x Tesla P100 PCIe (Dell EMC HPC blog, Oct 2016)";
  one.precision = "fp32";
  one.gpus = 1;
  one.batch_per_gpu = one.global_batch = 128;
  one.img_s = 468;
  one.ms_step = 128 / 468.0 * 1000;
  Row two = one;
  two.what = "DIGITS' engine, 2x Tesla P100 PCIe (same blog)";
  two.gpus = 2;
  two.global_batch = 256;
  two.img_s = 894;
  two.ms_step = 256 / 894.0 * 1000;
  Row digits;
  digits.kind = Kind::kReference;
  digits.system = "DIGITS";
  digits.what = "the 60-epoch GoogLeNet job on 2x Tesla P100, as reported";
  digits.precision = "fp32";
  digits.gpus = 2;
  digits.batch_per_gpu = 64;
  digits.global_batch = 128;
  digits.job_hours = 29;
  digits.val_source = "reported";
  return {one, two, digits};
}

void project(Results& r) {
  for (Row& row : r.rows) {
    if (!training(row.kind) || !(row.img_s > 0)) continue;
    if (row.val_source == "measured" && row.val_img_s > 0) {
      row.job_hours = job_hours(row.img_s, row.val_img_s);
      continue;
    }
    row.val_img_s = NAN;
    if (row.system == "incept")
      for (const Row& job : r.rows)
        if (job.kind == Kind::kJob && job.gpus == row.gpus && job.precision == row.precision &&
            job.val_img_s > 0 && job.val_source == "measured")
          row.val_img_s = std::max(std::isfinite(row.val_img_s) ? row.val_img_s : 0.0, job.val_img_s);
    row.val_source =
        std::isfinite(row.val_img_s) ? "measured" : fmt::format("assumed {:g}x", kAssumedValSpeedup);
    if (!std::isfinite(row.val_img_s)) row.val_img_s = kAssumedValSpeedup * row.img_s;
    row.job_hours = job_hours(row.img_s, row.val_img_s);
  }
}

namespace {
// What makes two rows the same measurement (merged output folders keep the first).
std::string row_key(const Row& r) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", int(r.kind), r.system, r.what, r.data, r.precision, r.gpus,
                     r.batch_per_gpu, r.global_batch, r.threads);
}

// "PyTorch NAME: not run ..." or run.sh's "pytorch: not run: PATTERN (...)": the configuration
// names or patterns the note is about (empty: some other note).
std::string not_run_subject(const std::string& note) {
  static const std::string a = "PyTorch ", b = "pytorch: not run: ";
  if (note.rfind(b, 0) == 0) return note.substr(b.size(), note.find(' ', b.size()) - b.size());
  const auto c = note.find(": not run");
  if (note.rfind(a, 0) == 0 && c != std::string::npos) return note.substr(a.size(), c - a.size());
  return "";
}
}  // namespace

Results collect(const std::vector<std::string>& dirs) {
  Results r;
  std::set<std::string> keys;
  std::vector<std::string> notes;
  for (std::size_t k = 0; k < dirs.size(); ++k) {
    const fs::path dir(dirs[k]);
    if (!fs::is_directory(dir)) throw Error(fmt::format("{}: no such output folder", dirs[k]));
    std::map<std::string, std::string> m;
    if (fs::exists(dir / "meta.txt")) m = parse_key_values(read_text(dir / "meta.txt"));
    for (const auto& [key, v] : m)
      if (!r.meta.count(key)) r.meta[key] = v;
    r.runs.push_back(fmt::format("run {}: {}, commit {}, run.sh {}", k + 1, m.count("date") ? m["date"] : "?",
                                 m.count("commit") ? m["commit"] : "?", m.count("args") ? m["args"] : "?"));
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    auto append = [&](std::vector<Row> rows) {
      for (Row& row : rows) {
        row.run = int(k);
        if (keys.insert(row_key(row)).second) r.rows.push_back(std::move(row));
      }
    };
    Results part;  // this folder's meta and notes, merged below
    for (const fs::path& f : files) {
      const std::string name = f.filename().string();
      try {
        if (name.rfind("step_", 0) == 0 && f.extension() == ".json")
          append(rows_from_step_json(read_text(f), m.count("data_label") ? m["data_label"] : "", &part));
        else if (name.rfind("peer_", 0) == 0 && f.extension() == ".json")
          append(rows_from_peer_json(read_text(f), &part));
        else if (name == "loader.json")
          append(rows_from_loader_json(read_text(f), &part));
        else if (name == "ingest.json")
          append(rows_from_ingest_json(read_text(f), &part));
        else if (name.rfind("job_", 0) == 0 && f.extension() == ".txt" &&
                 fs::exists(dir / (f.stem().string() + ".metrics.jsonl"))) {
          auto info = parse_key_values(read_text(f));
          if (!info.count("data") && m.count("data_label")) info["data"] = m["data_label"];
          append({row_from_job(read_text(dir / (f.stem().string() + ".metrics.jsonl")), info)});
        } else if (name == "skipped.txt") {
          std::istringstream in(read_text(f));
          for (std::string line; std::getline(in, line);)
            if (!line.empty()) part.notes.push_back(line);
        }
      } catch (const Error& e) {
        part.notes.push_back(fmt::format("{}: {}", f.string(), e.what()));
      }
    }
    for (const auto& [key, v] : part.meta)
      if (!r.meta.count(key)) r.meta[key] = v;
    for (const std::string& n : part.notes)
      notes.push_back(dirs.size() > 1 ? fmt::format("{} (run {})", n, k + 1) : n);
  }
  // A peer not run in one folder but measured in another: the note no longer holds.
  for (const std::string& n : notes) {
    const std::string subject = not_run_subject(n);
    const bool measured = !subject.empty() && std::any_of(r.rows.begin(), r.rows.end(), [&](const Row& row) {
      return !row.peer.empty() && (row.peer == subject || fnmatch(subject.c_str(), row.peer.c_str(), 0) == 0);
    });
    if (!measured) r.notes.push_back(n);
  }
  if (dirs.size() < 2) r.runs.clear();
  for (Row& ref : reference_rows()) r.rows.push_back(ref);
  project(r);
  return r;
}

std::string console_table(const Results& r) {
  std::string out;
  for (const std::string& line : header_lines(r)) out += line + "\n";
  out +=
      "\nGoogLeNet (DIGITS) training, img/s (median), peak MiB per GPU, DIGITS' 60-epoch job at that rate\n";
  out += training_table(r).text();
  const Table lt = loader_table(r);
  if (!lt.rows.empty()) out += "\nData: the training loader alone (no GPU) and the ingest\n" + lt.text();
  out += "\n";
  for (const std::string& line : explanation_lines()) out += line + "\n";
  for (const std::string& n : r.notes) out += "note: " + n + "\n";
  return out;
}

std::string csv(const Results& r) {
  auto q = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  };
  auto n = [](double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string(); };
  static const char* kKinds[] = {"step", "job", "peer", "reference", "loader", "ingest"};
  std::string out =
      "kind,system,configuration,data,gpus,batch_per_gpu,global_batch,precision,img_per_s,ms_per_step,peak_"
      "mib,"
      "val_img_per_s,val_source,job_hours,note\n";
  for (const Row& row : r.rows)
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", kKinds[int(row.kind)], q(row.system),
                       q(row.what), q(row.data), row.gpus, row.batch_per_gpu, row.global_batch,
                       q(row.precision), n(row.img_s), n(row.ms_step), n(row.peak_mib), n(row.val_img_s),
                       q(row.val_source), n(row.job_hours), q(row.note));
  return out;
}

std::string markdown(const Results& r, const std::string& chart_png) {
  std::string out = "## Latest `benchmarks/run.sh` (" + meta(r, "date") + ")\n\n";
  out +=
      "Generated by `benchmarks/run.sh` (do not edit between the markers: the next run replaces it; the "
      "hand-written history follows).\n\n";
  for (const std::string& line : header_lines(r)) out += "- " + line + "\n";
  out += "\n" + training_table(r).md();
  const Table lt = loader_table(r);
  if (!lt.rows.empty()) out += "\n" + lt.md();
  out += "\n";
  for (const std::string& line : explanation_lines()) out += "- " + line + "\n";
  for (const std::string& n : r.notes) out += "- note: " + n + "\n";
  if (!chart_png.empty()) out += "\n![img/s per configuration](" + chart_png + ")\n";
  return out;
}

std::string chart_json(const Results& r) {
  json groups = json::array();
  std::string group;
  for (const Row* row : training_rows(r)) {
    if (!(row->img_s > 0)) continue;
    if (group_title(*row) != group) {
      group = group_title(*row);
      groups.push_back({{"title", group}, {"bars", json::array()}});
    }
    std::string label = row->what;
    if (!row->data.empty() && row->data != "synthetic") label += ", real data";
    if (label.size() > 70) label = label.substr(0, 67) + "...";
    groups.back()["bars"].push_back(
        {{"label", label + " | " + row->precision},
         {"series", row->system},
         {"value", row->img_s},
         {"text",
          rate(row->img_s) +
              (std::isfinite(row->job_hours) ? "  (job " + format_duration(row->job_hours) + ")" : "")}});
  }
  const json j{
      {"title", fmt::format("DIGITS GoogLeNet training, {} x {}, {}", meta(r, "gpu_count", "0"),
                            meta(r, "gpu_model", "CPU"), meta(r, "date"))},
      {"value_label", "images/s, higher is better (job: DIGITS' 60-epoch ImageNet job at that rate)"},
      {"palette", json::array({json::array({"incept", "#1f77b4"}), json::array({"PyTorch", "#ff7f0e"}),
                               json::array({"NVIDIA Caffe", "#7f7f7f"})})},
      {"groups", groups}};
  return j.dump(1);
}

std::string splice_section(const std::string& existing, const std::string& section) {
  const std::string block = std::string(kSectionBegin) + "\n" + section +
                            (section.empty() || section.back() == '\n' ? "" : "\n") + kSectionEnd + "\n";
  const auto b = existing.find(kSectionBegin);
  if (b != std::string::npos) {
    const auto e = existing.find(kSectionEnd, b);
    if (e == std::string::npos) throw Error(fmt::format("{} without {}", kSectionBegin, kSectionEnd));
    std::size_t after = e + std::string(kSectionEnd).size();
    if (after < existing.size() && existing[after] == '\n') ++after;
    return existing.substr(0, b) + block + existing.substr(after);
  }
  const auto h = existing.find("\n## ");
  if (h == std::string::npos)
    return existing.empty() ? block : existing + (existing.back() == '\n' ? "\n" : "\n\n") + block;
  return existing.substr(0, h + 1) + block + "\n" + existing.substr(h + 1);
}

}  // namespace incept::bench

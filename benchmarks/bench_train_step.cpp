// Training-step benchmark of DIGITS' GoogLeNet on one GPU: synthetic data already on the
// GPU, SGD with momentum, the whole step (forward, backward, update) as one CUDA graph (or
// eager). Warm-up, then the median of timed steps with CUDA events; prints img/s, ms/step,
// peak device memory, the card, the CUDA/cuDNN/NCCL versions and the commit, and optionally a
// per-layer forward/backward table like `caffe time`. benchmarks/peer_pytorch.py measures the
// PyTorch peer the same way.
// With --dataset DIR the same step is also fed from a real LMDB dataset through the training
// loader (decode threads, pinned batches, async uint8 copy + transform before the graph), as
// train_googlenet runs it, and its wall-clock rate is printed beside the synthetic one.
// With --gpus 0,1 (or all) the synthetic step runs data parallel, one replica per GPU with
// --batch images each, the gradient all-reduce inside every replica's graph, as
// train_googlenet --gpus runs it. With --cpu it times the CPU reference step (CpuNet, Caffe's
// transform and SGD) instead, at whatever small batch is given: what a machine without a GPU
// can measure (benchmarks/run.sh --cpu).
#include <cudnn.h>
#include <fmt/format.h>
#include <nccl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/dataset.h"
#include "data/loader.h"
#include "engine/device.h"
#include "engine/gpu_input.h"
#include "engine/gpu_net.h"
#include "engine/log.h"
#include "engine/nccl_comm.h"
#include "engine/process_group.h"
#include "engine/train_backend.h"
#include "incept_commit.h"
#include "models/models.h"
#ifdef INCEPT_HAVE_CUPTI
#include "benchmarks/trace/kernel_trace.h"
#endif

namespace {

using namespace incept;

struct Result {
  std::string mode;
  double ms = 0, img_s = 0;
  double peak_mib = 0;   // see MemoryPeak
  double arena_mib = 0;  // what the net allocated (GpuNet::device_bytes), all of it before the first step
  std::string dtype, layout, data = "synthetic", device = "gpu";
  std::string fp32_math;    // fp32 on the GPU: "3xtf32", "tf32" or "strict" (FMA); else empty
  int gpus = 1, batch = 0;  // batch: images per step on each GPU
};

// One measured configuration.
struct Mode {
  std::string dtype;  // fp32 | bf16
  bool graph = true;
  bool tf32 = false;
  bool winograd = false;
  bool nhwc = false;
  SpatialConv spatial = SpatialConv::kAuto;
  int lanes = 0;               // GpuNetOptions::branch_lanes; 0: recommended_options'
  std::string conv1 = "auto";  // GpuNetOptions::few_channel_conv: auto (the default), implicit or gemm
  bool side_heads = PlanOptions{}.side_heads;  // the auxiliary heads as branches
  int graph_configs = 0;                       // GpuNetOptions::graph_configs; 0: the default
  bool lrn_relu_mask = GpuNetOptions{}.lrn_relu_mask;
  bool memset_kernels = GpuNetOptions{}.memset_kernels;
  bool pool_relu_mask = GpuNetOptions{}.pool_relu_mask;
  bool keep_im2col = GpuNetOptions{}.keep_im2col;
  int im2col_chunk_mib = -1;    // GpuNetOptions::im2col_chunk_bytes in MiB; -1: the default
  int winograd_chunk_mib = -1;  // GpuNetOptions::winograd_chunk_bytes in MiB; -1: the default
  int winograd_streams = 0;     // GpuNetOptions::winograd_streams; 0: the default
  bool tf32x3 = false;          // GpuNetOptions::tf32x3 (fp32)
};

// Peak device memory of one configuration on the current GPU: the memory in use beyond what was
// in use when it started (arenas, cuDNN/cuBLAS workspaces, graphs; not the CUDA context),
// sampled with cudaMemGetInfo after construction, after warm-up and after the timed steps.
// Nothing is allocated inside a step, so the samples catch the peak.
class MemoryPeak {
 public:
  MemoryPeak() { CUDA_CHECK(cudaMemGetInfo(&free0_, &total_)); }
  void sample() {
    std::size_t free = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total_));
    if (free < free0_) peak_ = std::max(peak_, free0_ - free);
  }
  double mib() const { return double(peak_) / (1 << 20); }

 private:
  std::size_t free0_ = 0, total_ = 0, peak_ = 0;
};

std::string mode_name(const Mode& m) {
  return fmt::format("{} {} {}{}{}{}{}{}", m.dtype, m.nhwc ? "NHWC" : "NCHW", m.graph ? "graph" : "eager",
                     m.tf32 ? " tf32" : "", m.winograd ? " winograd" : "",
                     m.spatial == SpatialConv::kGemm       ? " gemm"
                     : m.spatial == SpatialConv::kCudnn    ? " cudnn"
                     : m.spatial == SpatialConv::kWinograd ? " winograd-3x3"
                                                           : "",
                     m.lanes ? fmt::format(" {} lane{}", m.lanes, m.lanes > 1 ? "s" : "") : "",
                     m.conv1 == "auto" ? "" : " conv1-" + m.conv1) +
         (m.side_heads == PlanOptions{}.side_heads ? ""
          : m.side_heads                           ? " side-heads"
                                                   : " no-side-heads") +
         (m.graph_configs ? fmt::format(" {} configs", m.graph_configs) : "") +
         (m.lrn_relu_mask == GpuNetOptions{}.lrn_relu_mask ? ""
          : m.lrn_relu_mask                                ? " lrn-relu-mask"
                                                           : " no-lrn-relu-mask") +
         (m.memset_kernels == GpuNetOptions{}.memset_kernels ? ""
          : m.memset_kernels                                 ? " memset-kernels"
                                                             : " memset-nodes") +
         (m.pool_relu_mask == GpuNetOptions{}.pool_relu_mask ? ""
          : m.pool_relu_mask                                 ? " pool-relu-mask"
                                                             : " no-pool-relu-mask") +
         (m.keep_im2col == GpuNetOptions{}.keep_im2col ? ""
          : m.keep_im2col                              ? " keep-im2col"
                                                       : " no-keep-im2col") +
         (m.im2col_chunk_mib < 0 ? "" : fmt::format(" im2col-chunk {} MiB", m.im2col_chunk_mib)) +
         (m.winograd_chunk_mib < 0 ? "" : fmt::format(" winograd-chunk {} MiB", m.winograd_chunk_mib)) +
         (m.winograd_streams ? fmt::format(" winograd-streams {}", m.winograd_streams) : "") +
         (m.tf32x3 ? " 3xtf32" : "");
}

// The fp32 GEMM arithmetic a mode runs (empty for bf16): what the report names its precision by.
std::string fp32_math_of(const Mode& m) {
  if (m.dtype != "fp32") return "";
  return m.tf32x3 ? "3xtf32" : m.tf32 ? "tf32" : "strict";
}

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// The net's options for a mode on the current device: recommended_options for its dtype (what
// the trainer runs and tests/test_gpu_b128.cpp checks), changed only where a flag asks (the
// defaults of Mode change nothing: layout auto resolves to the recommended layout).
GpuNetOptions net_options(const Mode& m) {
  GpuNetOptions opt =
      recommended_options(current_device(), m.dtype == "bf16" ? kernels::DType::kBF16 : kernels::DType::kF32);
  opt.allow_tf32 = m.tf32;
  opt.allow_winograd = m.winograd;
  opt.channels_last = m.nhwc;
  opt.spatial_conv = m.spatial;
  if (m.lanes) opt.branch_lanes = m.lanes;
  if (m.conv1 != "auto") opt.few_channel_conv = m.conv1 == "implicit";
  if (m.graph_configs > 0) opt.graph_configs = m.graph_configs;
  opt.lrn_relu_mask = m.lrn_relu_mask;
  opt.memset_kernels = m.memset_kernels;
  opt.pool_relu_mask = m.pool_relu_mask;
  opt.keep_im2col = m.keep_im2col;
  if (m.im2col_chunk_mib >= 0) opt.im2col_chunk_bytes = std::size_t(m.im2col_chunk_mib) << 20;
  if (m.winograd_chunk_mib >= 0) opt.winograd_chunk_bytes = std::size_t(m.winograd_chunk_mib) << 20;
  if (m.winograd_streams) opt.winograd_streams = m.winograd_streams;
  opt.tf32x3 = m.tf32x3;
  return opt;
}

Result result_of(const Mode& m, std::vector<float> times, int batch, int gpus) {
  std::sort(times.begin(), times.end());
  Result r;
  r.mode = mode_name(m);
  r.dtype = m.dtype;
  r.fp32_math = fp32_math_of(m);
  r.layout = m.nhwc ? "NHWC" : "NCHW";
  r.ms = times[times.size() / 2];
  r.img_s = double(batch) * gpus / r.ms * 1000.0;
  r.gpus = gpus;
  r.batch = batch;
  return r;
}

// Random values in the data blob, labels spread over the classes.
void synthetic_input(GpuNet& net, const NetPlan& plan, int batch, int classes) {
  const Nchw in = plan.blobs[plan.data_blob].shape;
  std::vector<float> x(std::size_t(in.count()));
  std::uint64_t s = 12345;
  for (float& v : x) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    v = float((s >> 40) & 0xFFFF) / 65535.f * 2.f - 1.f;
  }
  net.set_input(x);
  std::vector<std::int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = (i * 37) % classes;
  CUDA_CHECK(cudaMemcpy(net.labels(), labels.data(), labels.size() * 4, cudaMemcpyHostToDevice));
}

StepValues step_values(int it, int replicas = 1) {
  return StepValues{.iteration = std::uint64_t(it),
                    .lr = 0.005f,
                    .momentum = 0.9f,
                    .weight_decay = 5e-5f,
                    .grad_scale = 1.f / float(replicas)};
}

// `steps` steps, each timed with CUDA events on the net's stream (ms, in order).
std::vector<float> timed_steps(GpuNet& net, int first, int steps, bool graph, int replicas = 1) {
  Event a = make_event(), b = make_event();
  std::vector<float> times;
  for (int i = 0; i < steps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, net.stream()));
    net.train_step(step_values(first + i, replicas), graph);
    CUDA_CHECK(cudaEventRecord(b, net.stream()));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    times.push_back(ms);
  }
  return times;
}

// `steps` more steps under CUPTI, each synchronized: every record to `path` (CSV, times in us
// from the step's first start) and each step's span, busy time and idle gaps printed.
void trace_steps(GpuNet& net, int first, int steps, bool graph, const std::string& path) {
#ifdef INCEPT_HAVE_CUPTI
  std::ofstream csv(path);
  if (!csv) throw Error("--trace: cannot write " + path);
  csv << "step,kind,stream,start_us,end_us,blocks,threads,name\n";
  bench::KernelTrace trace;
  CUDA_CHECK(cudaDeviceSynchronize());
  trace.collect();  // anything before the first traced step
  for (int i = 0; i < steps; ++i) {
    net.train_step(step_values(first + i), graph);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<bench::TraceRecord> recs = trace.collect();
    if (recs.empty()) throw Error("--trace: CUPTI recorded nothing");
    const std::uint64_t t0 = recs.front().start_ns;
    for (const bench::TraceRecord& r : recs)
      csv << fmt::format("{},{},{},{:.3f},{:.3f},{},{},\"{}\"\n", i, r.kind, r.stream,
                         double(r.start_ns - t0) / 1e3, double(r.end_ns - t0) / 1e3, r.blocks, r.threads,
                         r.name);
    const bench::TraceSummary s = bench::summarize(recs);
    std::printf(
        "  trace step %d: span %.1f us, GPU busy %.1f us, idle %.1f us, %d records on %d streams, "
        "their sum %.1f us\n",
        i, s.span_us, s.busy_us, s.span_us - s.busy_us, s.records, s.streams, s.sum_us);
  }
  log_info("kernel trace of {} steps in {}", steps, path);
#else
  (void)net, (void)first, (void)steps, (void)graph;
  throw Error("--trace " + path + ": this build has no CUPTI (CUDA::cupti was not found at configure time)");
#endif
}

Result run(const Mode& m, int batch, int classes, int warmup, int steps, bool layers,
           std::vector<LayerTime>* layer_times, bool algos = false, const std::string& trace = "") {
  PlanOptions po;
  po.stage = Stage::kTrain;
  po.batch = batch;
  po.num_classes = classes;
  po.side_heads = m.side_heads;
  NetPlan plan = plan_net(models::googlenet(), po);
  MemoryPeak mem;
  GpuNet net(plan, net_options(m));
  log_info("{} {}: {}", m.dtype, m.graph ? "graph" : "eager", net.memory_report());
  if (algos)
    for (const std::string& line : net.algorithm_report()) std::printf("  algo %s\n", line.c_str());
  net.init_params(1);
  synthetic_input(net, plan, batch, classes);
  mem.sample();
  for (int i = 0; i < warmup; ++i) net.train_step(step_values(i), m.graph);
  CUDA_CHECK(cudaStreamSynchronize(net.stream()));
  mem.sample();
  const std::vector<float> times = timed_steps(net, warmup, steps, m.graph);
  const float loss = net.output("loss");
  if (!std::isfinite(loss)) throw Error(fmt::format("{}: loss is {}", m.dtype, loss));
  mem.sample();
  Result r = result_of(m, times, batch, 1);
  r.peak_mib = mem.mib();
  r.arena_mib = double(net.device_bytes()) / (1 << 20);
  log_info(
      "{}: median {:.2f} ms/step (min {:.2f}, max {:.2f}), {:.0f} img/s, loss {:.4f}, peak device memory "
      "{:.0f} MiB",
      r.mode, r.ms, *std::min_element(times.begin(), times.end()),
      *std::max_element(times.begin(), times.end()), r.img_s, loss, r.peak_mib);
  if (!trace.empty()) trace_steps(net, warmup + steps, 5, m.graph, trace);
  if (layers && layer_times) *layer_times = net.time_layers(std::max(5, steps / 2));
  return r;
}

// The synthetic step data parallel over `gpus` (one replica per GPU, `batch` images each, one
// NCCL communicator, the all-reduce inside each replica's graph), as the trainer drives it: one
// host thread per replica, the first eager steps outside any capture (NCCL connects there).
// Step time: the median over the timed steps of the slowest replica's event-timed step.
Result run_parallel(const Mode& m, const std::vector<int>& gpus, int batch, int classes, int warmup,
                    int steps) {
  const int world = int(gpus.size());
  std::unique_ptr<ProcessGroup> pg = make_single_process_group();
  NcclGroup nccl(*pg, gpus, 120.0);
  PlanOptions po;
  po.stage = Stage::kTrain;
  po.batch = batch;
  po.num_classes = classes;
  po.side_heads = m.side_heads;
  const NetPlan plan = plan_net(models::googlenet(), po);
  struct Replica {
    std::unique_ptr<MemoryPeak> mem;
    std::unique_ptr<GpuNet> net;
    std::vector<float> times;
    ReduceTiming reduce;
  };
  std::vector<Replica> reps(gpus.size());
  for (int i = 0; i < world; ++i) {
    CUDA_CHECK(cudaSetDevice(gpus[std::size_t(i)]));
    Replica& r = reps[std::size_t(i)];
    r.mem = std::make_unique<MemoryPeak>();
    GpuNetOptions opt = net_options(m);
    opt.dropout_first_sample = std::uint64_t(i) * std::uint64_t(batch);
    r.net = std::make_unique<GpuNet>(plan, opt);
    r.net->set_grad_reduce(GradReduceOptions{.comm = nccl.comm(i)});
    r.net->init_params(1);
    synthetic_input(*r.net, plan, batch, classes);
    r.mem->sample();
  }
  log_info("{} x {} GPUs: {} per GPU", m.dtype, world, reps[0].net->memory_report());
  std::mutex err_mu;
  std::string first_error;
  auto body = [&](int i) {
    try {
      CUDA_CHECK(cudaSetDevice(gpus[std::size_t(i)]));
      Replica& r = reps[std::size_t(i)];
      GpuNet& n = *r.net;
      StepValues v0 = step_values(0, world);
      v0.grad_scale = 0.f;
      for (int k = 0; k < 2; ++k) n.train_step(v0, false, false);  // NCCL connects outside any capture
      r.reduce = n.time_grad_reduce(v0, 5);
      n.take_output_sums();
      for (int k = 0; k < warmup; ++k) n.train_step(step_values(k, world), m.graph);
      CUDA_CHECK(cudaStreamSynchronize(n.stream()));
      r.mem->sample();
      r.times = timed_steps(n, warmup, steps, m.graph, world);
      const float loss = n.output("loss");
      if (!std::isfinite(loss)) throw Error(fmt::format("{} replica {}: loss is {}", m.dtype, i, loss));
      r.mem->sample();
    } catch (const std::exception& e) {
      {
        std::lock_guard lock(err_mu);
        if (first_error.empty()) first_error = e.what();
      }
      nccl.abort(e.what());  // wakes the other replicas
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < world; ++i) threads.emplace_back(body, i);
  for (std::thread& t : threads) t.join();
  if (!first_error.empty()) throw Error(first_error);
  std::vector<float> slowest(std::size_t(steps), 0.f);
  double peak = 0;
  for (const Replica& r : reps) {
    for (int k = 0; k < steps; ++k)
      slowest[std::size_t(k)] = std::max(slowest[std::size_t(k)], r.times[std::size_t(k)]);
    peak = std::max(peak, r.mem->mib());
  }
  Result res = result_of(m, slowest, batch, world);
  res.mode += fmt::format(" x{} GPUs", world);
  res.peak_mib = peak;
  res.arena_mib = double(reps[0].net->device_bytes()) / (1 << 20);
  const ReduceTiming& t = reps[0].reduce;
  log_info(
      "{}: median {:.2f} ms/step, {:.0f} img/s ({} per GPU, global batch {}), peak device memory {:.0f} MiB "
      "per GPU; all-reduce {:.1f} MB in {} buckets, {:.2f} ms after backward ended",
      res.mode, res.ms, res.img_s, batch, batch * world, res.peak_mib, t.grad_bytes / 1e6, t.buckets,
      t.exposed_ms);
  for (int i = 0; i < world; ++i) {  // free each replica on its own device
    CUDA_CHECK(cudaSetDevice(gpus[std::size_t(i)]));
    reps[std::size_t(i)].net.reset();
  }
  return res;
}

// The step fed by the loader from a real dataset: wall-clock img/s over `steps` steps (the GPU
// never waits for data when this equals the synthetic rate).
Result run_dataset(const Mode& m, const std::string& dir, int batch, int threads, int warmup, int steps) {
  const data::DatasetInfo ds = data::open_dataset(dir);
  BackendConfig bc;
  bc.spec = models::googlenet();
  bc.num_classes = int(ds.labels.size());
  bc.batch = batch;
  bc.channels = ds.channels;
  bc.src_h = ds.height;
  bc.src_w = ds.width;
  bc.crop = 224;
  bc.mean_chw = ds.mean.chw;
  bc.device = current_device();
  bc.gpu = net_options(m);
  MemoryPeak mem;
  auto backend = make_gpu_backend(bc);
  backend->init_params(1);
  data::LoaderOptions lo;
  lo.db = ds.train_db;
  lo.batch = batch;
  lo.crop = 224;
  lo.mirror = true;
  lo.threads = threads;
  data::BatchLoader loader(lo, pinned_allocator());
  StepValues v = step_values(0);
  auto step = [&](int i) {
    const data::Batch& b = loader.next();
    v.iteration = std::uint64_t(i);
    backend->train_step(b, v, [&loader, &b] { loader.release(b); });
  };
  for (int i = 0; i < warmup; ++i) step(i);
  backend->take_train_sums();  // synchronizes
  mem.sample();
  const auto st0 = loader.stats();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step(warmup + i);
  const OutputSums sums = backend->take_train_sums();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  backend->drain();
  mem.sample();
  const auto st1 = loader.stats();
  Result r;
  r.mode = fmt::format("{} {} LMDB loader", m.dtype, m.nhwc ? "NHWC" : "NCHW");
  r.dtype = m.dtype;
  r.fp32_math = fp32_math_of(m);
  r.layout = m.nhwc ? "NHWC" : "NCHW";
  r.data = "lmdb";
  r.batch = batch;
  r.ms = dt * 1000.0 / steps;
  r.img_s = double(steps) * batch / dt;
  r.peak_mib = mem.mib();
  log_info(
      "{}: {:.2f} ms/step, {:.0f} img/s over {} steps from {} ({} records {}x{}x{}), {} decode threads, "
      "trainer waited {:.2f} s for data, decode {:.1f} thread-s; loss {:.4f}; peak device memory {:.0f} MiB",
      r.mode, r.ms, r.img_s, steps, dir, ds.train_count, ds.height, ds.width, ds.channels, loader.threads(),
      st1.wait_s - st0.wait_s, st1.decode_s - st0.decode_s, sums.empty() ? 0.0 : sums.back().second / steps,
      r.peak_mib);
  return r;
}

// The CPU reference step (CpuNet<float>: Caffe's transform from 256x256 uint8 records to the
// 224 crop, forward, backward, SGD), synthetic records; wall-clock time per step.
Result run_cpu(int batch, int classes, int warmup, int steps) {
  BackendConfig bc;
  bc.spec = models::googlenet();
  bc.num_classes = classes;
  bc.batch = batch;
  bc.channels = 3;
  bc.src_h = bc.src_w = 256;
  bc.crop = 224;
  bc.mean_values = {104.f, 117.f, 123.f};
  auto backend = make_cpu_backend(bc);
  log_info("{}: {}", backend->describe(), backend->memory_report());
  backend->init_params(1);
  std::vector<std::uint8_t> pixels(std::size_t(batch) * 256 * 256 * 3);
  std::uint64_t s = 12345;
  for (std::uint8_t& p : pixels) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    p = std::uint8_t(s >> 56);
  }
  std::vector<data::CropParams> crops(std::size_t(batch), data::CropParams{16, 16, 0});
  std::vector<std::int32_t> labels(static_cast<std::size_t>(batch));
  for (int i = 0; i < batch; ++i) labels[std::size_t(i)] = (i * 37) % classes;
  data::Batch b;
  b.n = b.n_valid = batch;
  b.pixels = pixels.data();
  b.crops = crops.data();
  b.labels = labels.data();
  std::vector<float> times;
  for (int i = 0; i < warmup + steps; ++i) {
    b.index = i;
    const auto t0 = std::chrono::steady_clock::now();
    backend->train_step(b, step_values(i), [] {});
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) times.push_back(float(ms));
  }
  const OutputSums sums = backend->take_train_sums();
  const double loss = sums.empty() ? 0.0 : sums.back().second / (warmup + steps);
  if (!std::isfinite(loss)) throw Error(fmt::format("CPU reference: loss is {}", loss));
  Result r = result_of(Mode{.dtype = "fp32", .graph = false}, times, batch, 1);
  r.mode = "fp32 CPU reference";
  r.device = "cpu";
  r.fp32_math.clear();  // the CPU reference: plain fp32 arithmetic, no GEMM choice
  r.gpus = 0;
  // Host memory of the net's arenas (activations, parameters x3, workspace), fp32.
  const NetPlan& plan = backend->train_plan();
  r.peak_mib = r.arena_mib =
      double(plan.activation_elems + 3 * plan.param_elems + plan.workspace_elems) * 4 / double(1 << 20);
  log_info("{}: median {:.1f} ms/step over {} steps, {:.2f} img/s, loss {:.4f}", r.mode, r.ms, steps, r.img_s,
           loss);
  return r;
}

// Versions of the libraries this process loaded (what ran, not what it was built with).
nlohmann::json library_versions() {
  nlohmann::json v;
  int rt = 0, drv = 0;
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess)
    v["cuda_runtime"] = fmt::format("{}.{}", rt / 1000, rt % 1000 / 10);
  if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
    v["cuda_driver_api"] = fmt::format("{}.{}", drv / 1000, drv % 1000 / 10);
  const std::size_t dnn = cudnnGetVersion();  // 9.19.0 -> 91900
  v["cudnn"] = fmt::format("{}.{}.{}", dnn / 10000, dnn % 10000 / 100, dnn % 100);
  int nv = 0;
  if (ncclGetVersion(&nv) == ncclSuccess)
    v["nccl"] = fmt::format("{}.{}.{}", nv / 10000, nv % 10000 / 100, nv % 100);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  nccl_default_environment();
  CLI::App app{"GoogLeNet (DIGITS) training-step benchmark on one GPU, data parallel on several, or the CPU"};
  int batch = 128, classes = 1000, warmup = 10, steps = 30, device = 0;
  std::vector<std::string> dtypes{"fp32", "bf16"}, layouts{"auto"};
  std::string spatial = "auto", gpus_spec;
  bool eager = false, tf32 = false, layers = false, algos = false, winograd = false, cpu = false;
  std::string json_out, dataset;
  int loader_threads = 0;
  app.add_option("--batch", batch, "images per step (per GPU with --gpus)")->capture_default_str();
  app.add_option("--classes", classes, "classifier outputs")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--steps", steps, "timed steps (median reported)")->capture_default_str();
  app.add_option("--dtype", dtypes, "fp32, bf16 and/or auto (recommended_options: bf16 from sm_80)")
      ->capture_default_str();
  app.add_option("--device", device, "GPU index")->capture_default_str();
  app.add_option(
      "--gpus", gpus_spec,
      "data parallel over these GPUs (e.g. 0,1 or all), --batch images per GPU; synthetic data only");
  app.add_flag("--cpu", cpu, "time the CPU reference step instead (fp32; use a small --batch, e.g. 2)");
  app.add_option("--spatial", spatial,
                 "channels-last RxS convolutions: auto (bf16 cudnn; fp32 gemm, with 3x3 layers as winograd "
                 "where the GEMMs "
                 "are FMA, not 3xTF32), cudnn, gemm (im2col + cuBLAS) or winograd (3x3: F(2x2,3x3) Winograd "
                 "on strict "
                 "cuBLAS; the rest gemm)")
      ->capture_default_str();
  app.add_option("--layout", layouts, "nchw, nhwc and/or auto (recommended_options: nhwc from sm_70)")
      ->capture_default_str();
  std::vector<int> lanes_list{0};
  app.add_option("--lanes", lanes_list,
                 "branch lanes (streams) for the inception branches, one run each, e.g. 1 4 (0: the default)")
      ->capture_default_str();
  std::string conv1 = "auto";
  app.add_option("--conv1", conv1,
                 "conv1 (channels-last): auto = GpuNetOptions' default (implicit), implicit = the "
                 "implicit-GEMM kernel in bf16 (kernels/conv_few_channels_gpu.h; compute capability 8.0+) "
                 "or the direct FMA kernel in fp32 (kernels/conv_few_fp32_gpu.h), gemm = im2col + cuBLAS")
      ->capture_default_str();
  app.add_flag("--eager", eager, "also time eager mode (no CUDA graph)");
  bool no_side_heads = false;
  app.add_flag("--no-side-heads", no_side_heads,
               "plan the auxiliary heads before the next inception module instead of as one more branch of "
               "it (PlanOptions::side_heads, on by default)");
  std::string trace;
  app.add_option(
      "--trace", trace,
      "after timing, 5 more steps under CUPTI: every kernel, memset and memcpy with its stream and "
      "times to this CSV, and each step's busy and idle time printed");
  bool no_pool_relu_mask = false;
  app.add_flag(
      "--no-pool-relu-mask", no_pool_relu_mask,
      "conv1 applies its own ReLU mask instead of pool1 (GpuNetOptions::pool_relu_mask, on by default)");
  bool memset_nodes = false;
  app.add_flag("--memset-nodes", memset_nodes,
               "keep the memset nodes of the step's CUDA graph instead of running them as kernel nodes "
               "(GpuNetOptions::memset_kernels)");
  bool no_lrn_relu_mask = false;
  app.add_flag("--no-lrn-relu-mask", no_lrn_relu_mask,
               "conv2/3x3 applies its own ReLU mask instead of norm2's backward applying it "
               "(GpuNetOptions::lrn_relu_mask, on by default)");
  int graph_configs = 0;
  app.add_option("--graph-configs", graph_configs,
                 "bf16 channels-last: heuristic engine configs of cuDNN's backend API timed per convolution "
                 "direction (GpuNetOptions::graph_configs; 0: the default)");
  bool keep_im2col = GpuNetOptions{}.keep_im2col;
  app.add_flag("--keep-im2col,!--no-keep-im2col", keep_im2col,
               "GEMM convolutions keep their im2col rows from forward for the weight gradient, or rebuild "
               "them in backward (GpuNetOptions::keep_im2col)")
      ->capture_default_str();
  std::vector<int> chunk_list{-1};
  app.add_option("--im2col-chunk-mib", chunk_list,
                 "GEMM convolutions: im2col rows per chunk of images at most this many MiB, one run each, "
                 "e.g. 0 64 16 (0: the whole batch; -1: GpuNetOptions' default)")
      ->capture_default_str();
  int winograd_chunk_mib = -1;
  app.add_option("--winograd-chunk-mib", winograd_chunk_mib,
                 "Winograd convolutions: workspace per chunk of images at most this many MiB (0: the whole "
                 "batch; -1: GpuNetOptions' default)")
      ->capture_default_str();
  int winograd_streams = 0;
  app.add_option("--winograd-streams", winograd_streams,
                 "Winograd convolutions in chunks: 1 or 2 streams (0: GpuNetOptions' default)")
      ->capture_default_str();
  app.add_flag("--tf32", tf32, "fp32 mode: allow TF32 tensor cores");
  std::vector<std::string> fp32_maths{"auto"};
  app.add_option("--fp32-math", fp32_maths,
                 "fp32 GEMMs, one run each: auto (recommended_options: 3xtf32 on compute capability 8.0+), "
                 "strict (cuBLAS, FMA fp32) and/or 3xtf32 (incept's "
                 "3xTF32 tensor-core kernel at fp32 accuracy, GpuNetOptions::tf32x3)")
      ->capture_default_str();
  app.add_flag("--winograd", winograd, "fp32 mode: also time with non-fused Winograd on 3x3 filters");
  app.add_flag("--layers", layers, "print the per-layer forward/backward time table");
  app.add_flag("--algos", algos, "print the cuDNN algorithm chosen for each convolution");
  app.add_option("--json", json_out, "write results as JSON to this file");
  app.add_option("--dataset", dataset,
                 "also time the step fed from this dataset folder's train_db through the loader");
  app.add_option("--loader-threads", loader_threads, "decode threads with --dataset (0: automatic)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (steps < 1 || warmup < 0 || batch < 1) throw Error("--steps and --batch must be >= 1, --warmup >= 0");
    std::vector<Result> results;
    nlohmann::json j;
    j["commit"] = INCEPT_GIT_COMMIT;
    j["batch"] = batch;
    j["versions"] = library_versions();
    if (cpu) {
      std::printf(
          "incept bench_train_step  commit %s  CPU reference (%u hardware threads)  batch %d  classes %d\n",
          INCEPT_GIT_COMMIT, std::thread::hardware_concurrency(), batch, classes);
      std::fflush(stdout);
      j["gpu"] = "none (CPU reference)";
      results.push_back(run_cpu(batch, classes, warmup, steps));
    } else {
      if (gpu_count() == 0) throw Error(no_gpu_reason() + " (--cpu times the CPU reference step)");
      const std::vector<int> gpus = gpus_spec.empty() ? std::vector<int>{device} : parse_gpu_list(gpus_spec);
      if (gpus.empty()) throw Error("--gpus names no GPU (--cpu times the CPU reference step)");
      const bool parallel = gpus.size() > 1;
      if (parallel && (!dataset.empty() || layers || eager || winograd))
        throw Error(
            "--gpus with several GPUs times the synthetic graph step only (no --dataset, --layers, "
            "--eager or --winograd): train_googlenet --gpus runs the real data in parallel");
      device = gpus[0];
      CUDA_CHECK(cudaSetDevice(device));
      std::printf("incept bench_train_step  commit %s  GPU %s%s  batch %d%s  classes %d\n", INCEPT_GIT_COMMIT,
                  describe_gpu(device).c_str(), parallel ? fmt::format(" x {}", gpus.size()).c_str() : "",
                  batch, parallel ? " per GPU" : "", classes);
      std::fflush(stdout);
      j["gpu"] = describe_gpu(device);
      j["gpus"] = gpus.size();
      const GpuNetOptions rec = recommended_options(device);
      for (const std::string& d0 : dtypes)
        for (const std::string& lay : layouts)
          for (const int lanes : lanes_list)
            for (const int chunk_mib : chunk_list)
              for (const std::string& math : fp32_maths) {
                if (math != "auto" && math != "strict" && math != "3xtf32")
                  throw Error("--fp32-math must be auto, strict or 3xtf32, got " + math);
                if (d0 != "fp32" && d0 != "bf16" && d0 != "auto")
                  throw Error("--dtype must be fp32, bf16 or auto, got " + d0);
                const std::string d = d0 == "auto" ? kernels::dtype_name(rec.dtype) : d0;
                if (d != "fp32" && math != fp32_maths.front()) continue;  // one bf16 run
                // "auto strict" where auto is strict (no 3xTF32 before compute capability 8.0): once
                if (d == "fp32" && math == "auto" && !rec.tf32x3 &&
                    std::find(fp32_maths.begin(), fp32_maths.end(), "strict") != fp32_maths.end())
                  continue;
                if (lay != "auto" && lay != "nchw" && lay != "nhwc")
                  throw Error("--layout must be nchw, nhwc or auto, got " + lay);
                Mode m{.dtype = d,
                       .graph = true,
                       .tf32 = tf32 && d == "fp32",
                       .winograd = false,
                       .nhwc = lay == "nhwc" || (lay == "auto" && rec.channels_last)};
                if (spatial != "auto" && spatial != "cudnn" && spatial != "gemm" && spatial != "winograd")
                  throw Error("--spatial must be auto, cudnn, gemm or winograd, got " + spatial);
                m.spatial = spatial == "gemm"       ? SpatialConv::kGemm
                            : spatial == "cudnn"    ? SpatialConv::kCudnn
                            : spatial == "winograd" ? SpatialConv::kWinograd
                                                    : SpatialConv::kAuto;
                if (lanes < 0) throw Error("--lanes must be >= 0");
                m.lanes = lanes;
                if (conv1 != "auto" && conv1 != "gemm" && conv1 != "implicit")
                  throw Error("--conv1 must be auto, implicit or gemm, got " + conv1);
                m.conv1 = conv1;
                m.side_heads = !no_side_heads;
                if (graph_configs < 0) throw Error("--graph-configs must be >= 0");
                m.graph_configs = graph_configs;
                m.lrn_relu_mask = !no_lrn_relu_mask;
                m.memset_kernels = !memset_nodes;
                m.pool_relu_mask = !no_pool_relu_mask;
                m.keep_im2col = keep_im2col;
                if (chunk_mib < -1) throw Error("--im2col-chunk-mib must be >= -1");
                m.im2col_chunk_mib = chunk_mib;
                if (winograd_chunk_mib < -1) throw Error("--winograd-chunk-mib must be >= -1");
                m.winograd_chunk_mib = winograd_chunk_mib;
                if (winograd_streams < 0 || winograd_streams > 2)
                  throw Error("--winograd-streams must be 0, 1 or 2");
                m.winograd_streams = winograd_streams;
                m.tf32x3 = d == "fp32" && (math == "3xtf32" || (math == "auto" && rec.tf32x3));
                if (parallel) {
                  results.push_back(run_parallel(m, gpus, batch, classes, warmup, steps));
                  continue;
                }
                const std::string key = fmt::format("{} {}{}", d, m.nhwc ? "NHWC" : "NCHW",
                                                    lanes ? fmt::format(" {} lanes", lanes) : "");
                std::vector<LayerTime> lt;
                results.push_back(run(m, batch, classes, warmup, steps, layers, &lt, algos, trace));
                if (!dataset.empty())
                  results.push_back(
                      run_dataset(m, dataset, batch, loader_threads, warmup, std::max(steps, 100)));
                if (eager) {
                  Mode e = m;
                  e.graph = false;
                  results.push_back(run(e, batch, classes, warmup, steps, false, nullptr));
                }
                if (winograd && d == "fp32") {
                  Mode w = m;
                  w.winograd = true;
                  results.push_back(run(w, batch, classes, warmup, steps, false, nullptr));
                }
                if (layers) {
                  std::printf("\nper-layer times, %s, batch %d (median of eager steps, ms)\n", key.c_str(),
                              batch);
                  std::printf("%-34s %-16s %9s %9s\n", "layer", "type", "forward", "backward");
                  double tf = 0, tb = 0;
                  for (const LayerTime& t : lt) {
                    std::printf("%-34s %-16s %9.3f %9.3f\n", t.name.c_str(), t.type.c_str(), t.forward_ms,
                                t.backward_ms);
                    tf += t.forward_ms;
                    tb += t.backward_ms;
                    j["layers"][key].push_back({{"name", t.name},
                                                {"type", t.type},
                                                {"fwd_ms", t.forward_ms},
                                                {"bwd_ms", t.backward_ms}});
                  }
                  std::printf("%-34s %-16s %9.3f %9.3f\n", "total", "", tf, tb);
                }
              }
    }
    std::printf("\n%-34s %10s %10s %10s %10s\n", "mode", "ms/step", "img/s", "net MiB", "in use MiB");
    for (const Result& r : results) {
      std::printf("%-34s %10.2f %10.*f %10.0f %10.0f\n", r.mode.c_str(), r.ms, r.img_s < 100 ? 2 : 0, r.img_s,
                  r.arena_mib, r.peak_mib);
      // peak_mib: the device memory in use at its peak (MemoryPeak; it also holds the libraries'
      // lazily loaded kernels in a process's first configuration); arena_mib: what the net allocated
      // (0 where not known: LMDB-fed steps); "mib" as earlier runs' JSON named the peak.
      j["results"].push_back(
          {{"mode", r.mode},
           {"ms_per_step", r.ms},
           {"img_per_s", r.img_s},
           {"mib", r.peak_mib},
           {"peak_mib", r.peak_mib},
           {"arena_mib", r.arena_mib},
           {"memory", r.device == "cpu" ? "host arenas" : "device, beyond the CUDA context"},
           {"dtype", r.dtype},
           {"fp32_math", r.fp32_math},
           {"layout", r.layout},
           {"data", r.data},
           {"device", r.device},
           {"gpus", r.gpus},
           {"batch_per_gpu", r.batch},
           {"global_batch", r.batch * std::max(1, r.gpus)}});
    }
    if (!json_out.empty()) std::ofstream(json_out) << j.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
  return 0;
}

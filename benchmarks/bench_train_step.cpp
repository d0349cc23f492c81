// Training-step benchmark of DIGITS' GoogLeNet on one GPU: synthetic data already on the
// GPU, SGD with momentum, the whole step (forward, backward, update) as one CUDA graph (or
// eager). Warm-up, then the median of timed steps with CUDA events; prints img/s, ms/step,
// device memory, the card and the commit, and optionally a per-layer forward/backward table
// like `caffe time`. benchmarks/peer_pytorch.py measures the PyTorch peer the same way.
// With --dataset DIR the same step is also fed from a real LMDB dataset through the training
// loader (decode threads, pinned batches, async uint8 copy + transform before the graph), as
// train_googlenet runs it, and its wall-clock rate is printed beside the synthetic one.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/loader.h"
#include "engine/device.h"
#include "engine/gpu_net.h"
#include "engine/log.h"
#include "engine/train_backend.h"
#include "incept_commit.h"
#include "models/models.h"

namespace {

using namespace incept;

struct Result {
  std::string mode;
  double ms = 0, img_s = 0, mib = 0;
};

// One measured configuration.
struct Mode {
  std::string dtype;  // fp32 | bf16
  bool graph = true;
  bool tf32 = false;
  bool winograd = false;
  bool nhwc = false;
  SpatialConv spatial = SpatialConv::kAuto;
};

// The net's options for a mode: recommended_options for its dtype (what the trainer runs and
// tests/test_gpu_b128.cpp checks), changed only where a flag asks (the defaults of Mode change
// nothing: layout auto resolves to the recommended layout).
GpuNetOptions options_of(const Mode& m, int device) {
  GpuNetOptions opt =
      recommended_options(device, m.dtype == "bf16" ? kernels::DType::kBF16 : kernels::DType::kF32);
  opt.allow_tf32 = m.tf32;
  opt.allow_winograd = m.winograd;
  opt.channels_last = m.nhwc;
  opt.spatial_conv = m.spatial;
  return opt;
}

Result run(const Mode& m, int device, int batch, int classes, int warmup, int steps, bool layers,
           std::vector<LayerTime>* layer_times, bool algos = false) {
  const std::string& dtype_name = m.dtype;
  const bool graph = m.graph, tf32 = m.tf32, winograd = m.winograd;
  PlanOptions po;
  po.stage = Stage::kTrain;
  po.batch = batch;
  po.num_classes = classes;
  NetPlan plan = plan_net(models::googlenet(), po);
  const GpuNetOptions opt = options_of(m, device);
  std::size_t free0 = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  GpuNet net(plan, opt);
  log_info("{} {}: {}", dtype_name, graph ? "graph" : "eager", net.memory_report());
  if (algos)
    for (const std::string& line : net.algorithm_report()) std::printf("  algo %s\n", line.c_str());
  net.init_params(1);
  // Synthetic input: random values in the data blob, labels spread over the classes.
  {
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
  auto values = [](int it) {
    return StepValues{.iteration = std::uint64_t(it), .lr = 0.005f, .momentum = 0.9f, .weight_decay = 5e-5f};
  };
  for (int i = 0; i < warmup; ++i) net.train_step(values(i), graph);
  CUDA_CHECK(cudaStreamSynchronize(net.stream()));
  Event a = make_event(), b = make_event();
  std::vector<float> times;
  for (int i = 0; i < steps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, net.stream()));
    net.train_step(values(warmup + i), graph);
    CUDA_CHECK(cudaEventRecord(b, net.stream()));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    times.push_back(ms);
  }
  const float loss = net.output("loss");
  if (!std::isfinite(loss)) throw Error(fmt::format("{}: loss is {}", dtype_name, loss));
  std::size_t free1 = 0;
  CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  std::sort(times.begin(), times.end());
  Result r;
  r.mode = fmt::format("{} {} {}{}{}{}", dtype_name, m.nhwc ? "NHWC" : "NCHW", graph ? "graph" : "eager",
                       tf32 ? " tf32" : "", winograd ? " winograd" : "",
                       m.spatial == SpatialConv::kGemm    ? " gemm"
                       : m.spatial == SpatialConv::kCudnn ? " cudnn"
                                                          : "");
  r.ms = times[times.size() / 2];
  r.img_s = batch / r.ms * 1000.0;
  r.mib = double(free0 - free1) / (1 << 20);
  log_info(
      "{}: median {:.2f} ms/step (min {:.2f}, max {:.2f}), {:.0f} img/s, loss {:.4f}, device memory {:.0f} "
      "MiB",
      r.mode, r.ms, times.front(), times.back(), r.img_s, loss, r.mib);
  if (layers && layer_times) *layer_times = net.time_layers(std::max(5, steps / 2));
  return r;
}

// The step fed by the loader from a real dataset: wall-clock img/s over `steps` steps (the GPU
// never waits for data when this equals the synthetic rate).
Result run_dataset(const Mode& m, int device, const std::string& dir, int batch, int threads, int warmup,
                   int steps) {
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
  bc.device = device;
  bc.gpu = options_of(m, device);
  auto backend = make_gpu_backend(bc);
  backend->init_params(1);
  data::HostAllocator alloc{[](std::size_t n) {
                              void* p = nullptr;
                              CUDA_CHECK(cudaHostAlloc(&p, n, cudaHostAllocDefault));
                              return p;
                            },
                            [](void* p) { cudaFreeHost(p); }};
  data::LoaderOptions lo;
  lo.db = ds.train_db;
  lo.batch = batch;
  lo.crop = 224;
  lo.mirror = true;
  lo.threads = threads;
  data::BatchLoader loader(lo, alloc);
  StepValues v{.iteration = 0, .lr = 0.005f, .momentum = 0.9f, .weight_decay = 5e-5f};
  auto step = [&](int i) {
    const data::Batch& b = loader.next();
    v.iteration = std::uint64_t(i);
    backend->train_step(b, v, [&loader, &b] { loader.release(b); });
  };
  for (int i = 0; i < warmup; ++i) step(i);
  backend->take_train_sums();  // synchronizes
  const auto st0 = loader.stats();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step(warmup + i);
  const OutputSums sums = backend->take_train_sums();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  backend->drain();
  const auto st1 = loader.stats();
  Result r;
  r.mode = fmt::format("{} {} LMDB loader", m.dtype, m.nhwc ? "NHWC" : "NCHW");
  r.ms = dt * 1000.0 / steps;
  r.img_s = double(steps) * batch / dt;
  log_info(
      "{}: {:.2f} ms/step, {:.0f} img/s over {} steps from {} ({} records {}x{}x{}), {} decode threads, "
      "trainer waited {:.2f} s for data, decode {:.1f} thread-s; loss {:.4f}",
      r.mode, r.ms, r.img_s, steps, dir, ds.train_count, ds.height, ds.width, ds.channels, loader.threads(),
      st1.wait_s - st0.wait_s, st1.decode_s - st0.decode_s, sums.empty() ? 0.0 : sums.back().second / steps);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GoogLeNet (DIGITS) training-step benchmark on one GPU"};
  int batch = 128, classes = 1000, warmup = 10, steps = 30, device = 0;
  std::vector<std::string> dtypes{"fp32", "bf16"}, layouts{"auto"};
  std::string spatial = "auto";
  bool eager = false, tf32 = false, layers = false, algos = false, winograd = false;
  std::string json_out, dataset;
  int loader_threads = 0;
  app.add_option("--batch", batch, "images per step")->capture_default_str();
  app.add_option("--classes", classes, "classifier outputs")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--steps", steps, "timed steps (median reported)")->capture_default_str();
  app.add_option("--dtype", dtypes, "fp32, bf16 and/or auto (recommended_options: bf16 from sm_80)")
      ->capture_default_str();
  app.add_option("--device", device, "GPU index")->capture_default_str();
  app.add_option(
         "--spatial", spatial,
         "channels-last RxS convolutions: auto (fp32 gemm, bf16 cudnn), cudnn or gemm (im2col + cuBLAS)")
      ->capture_default_str();
  app.add_option("--layout", layouts, "nchw, nhwc and/or auto (recommended_options: nhwc from sm_70)")
      ->capture_default_str();
  app.add_flag("--eager", eager, "also time eager mode (no CUDA graph)");
  app.add_flag("--tf32", tf32, "fp32 mode: allow TF32 tensor cores");
  app.add_flag("--winograd", winograd, "fp32 mode: also time with non-fused Winograd on 3x3 filters");
  app.add_flag("--layers", layers, "print the per-layer forward/backward time table");
  app.add_flag("--algos", algos, "print the cuDNN algorithm chosen for each convolution");
  app.add_option("--json", json_out, "write results as JSON to this file");
  app.add_option("--dataset", dataset,
                 "also time the step fed from this dataset folder's train_db through the loader");
  app.add_option("--loader-threads", loader_threads, "decode threads with --dataset (0: automatic)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (gpu_count() == 0) throw Error(no_gpu_reason());
    CUDA_CHECK(cudaSetDevice(device));
    std::printf("incept bench_train_step  commit %s  GPU %s  batch %d  classes %d\n", INCEPT_GIT_COMMIT,
                describe_gpu(device).c_str(), batch, classes);
    std::vector<Result> results;
    nlohmann::json j;
    j["gpu"] = describe_gpu(device);
    j["commit"] = INCEPT_GIT_COMMIT;
    j["batch"] = batch;
    const GpuNetOptions rec = recommended_options(device);
    for (const std::string& d0 : dtypes)
      for (const std::string& lay : layouts) {
        if (d0 != "fp32" && d0 != "bf16" && d0 != "auto")
          throw Error("--dtype must be fp32, bf16 or auto, got " + d0);
        const std::string d = d0 == "auto" ? kernels::dtype_name(rec.dtype) : d0;
        if (lay != "auto" && lay != "nchw" && lay != "nhwc")
          throw Error("--layout must be nchw, nhwc or auto, got " + lay);
        Mode m{.dtype = d,
               .graph = true,
               .tf32 = tf32 && d == "fp32",
               .winograd = false,
               .nhwc = lay == "nhwc" || (lay == "auto" && rec.channels_last)};
        if (spatial != "auto" && spatial != "cudnn" && spatial != "gemm")
          throw Error("--spatial must be auto, cudnn or gemm, got " + spatial);
        m.spatial = spatial == "gemm"    ? SpatialConv::kGemm
                    : spatial == "cudnn" ? SpatialConv::kCudnn
                                         : SpatialConv::kAuto;
        const std::string key = fmt::format("{} {}", d, m.nhwc ? "NHWC" : "NCHW");
        std::vector<LayerTime> lt;
        results.push_back(run(m, device, batch, classes, warmup, steps, layers, &lt, algos));
        if (!dataset.empty())
          results.push_back(
              run_dataset(m, device, dataset, batch, loader_threads, warmup, std::max(steps, 100)));
        if (eager) {
          Mode e = m;
          e.graph = false;
          results.push_back(run(e, device, batch, classes, warmup, steps, false, nullptr));
        }
        if (winograd && d == "fp32") {
          Mode w = m;
          w.winograd = true;
          results.push_back(run(w, device, batch, classes, warmup, steps, false, nullptr));
        }
        if (layers) {
          std::printf("\nper-layer times, %s, batch %d (median of eager steps, ms)\n", key.c_str(), batch);
          std::printf("%-34s %-16s %9s %9s\n", "layer", "type", "forward", "backward");
          double tf = 0, tb = 0;
          for (const LayerTime& t : lt) {
            std::printf("%-34s %-16s %9.3f %9.3f\n", t.name.c_str(), t.type.c_str(), t.forward_ms,
                        t.backward_ms);
            tf += t.forward_ms;
            tb += t.backward_ms;
            j["layers"][key].push_back(
                {{"name", t.name}, {"type", t.type}, {"fwd_ms", t.forward_ms}, {"bwd_ms", t.backward_ms}});
          }
          std::printf("%-34s %-16s %9.3f %9.3f\n", "total", "", tf, tb);
        }
      }
    std::printf("\n%-26s %10s %10s %10s\n", "mode", "ms/step", "img/s", "MiB");
    for (const Result& r : results) {
      std::printf("%-26s %10.2f %10.0f %10.0f\n", r.mode.c_str(), r.ms, r.img_s, r.mib);
      j["results"].push_back(
          {{"mode", r.mode}, {"ms_per_step", r.ms}, {"img_per_s", r.img_s}, {"mib", r.mib}});
    }
    if (!json_out.empty()) std::ofstream(json_out) << j.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
  return 0;
}

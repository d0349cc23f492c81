// Experiment: cuDNN's backend (graph) API engines against the legacy API for GoogLeNet's
// channels-last bf16 convolutions (batch 128 by default).
//
// Why: engine/cudnn_conv.cpp picks algorithms with the legacy cudnnFind*AlgorithmEx. On an
// H200 conv2/3x3 (128x64x56x56 -> 192, 3x3) runs forward at ~126 TFLOP/s (0.351 ms) and
// backward (dgrad + wgrad) in 0.559 ms, while inception_3b/3x3 (the same FLOPs) runs forward
// in 0.110 ms. The backend API reaches engines the legacy API may not use (Hopper-specific
// kernels, runtime-compiled kernels); this program measures whether any of them is faster.
//
// Per shape and direction (forward y = conv(x, w), backward data dx = conv_bwd_data(dy, w),
// backward filter dw = conv_bwd_filter(x, dy); alpha 1, beta 0; bf16 NHWC tensors, KRSC
// filters, fp32 compute, cross-correlation):
//  1. legacy: cudnnFind*AlgorithmEx under a 512 MiB workspace limit, the best few re-timed
//     here; the best one's output is the reference;
//  2. backend: one-operation graph; engine configs from heuristics mode A and B and every
//     global engine index with default knobs, each finalized into a plan (failures counted),
//     run on a NaN-poisoned output, compared with the reference (relative L2 error of the bf16
//     output, > 1e-2 flagged WRONG) and timed;
//  3. backward filter again with beta = 1 (the engine accumulates weight gradients) for the
//     legacy best and the fastest backend configs.
// Times are medians of >= 20 single calls timed with CUDA events after 3 warm-up calls.
//
//   bench_cudnn_engines [--batch 128] [--samples 20] [--shapes conv2,3b] [--dirs fwd,dgrad,wgrad]
//                       [--top 5] [--no-global] [--verbose] [--json out.json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/cudnn_conv.h"
#include "engine/cudnn_graph.h"
#include "engine/device.h"
#include "engine/owners.h"
#include "incept_commit.h"

using namespace incept;
using bf16 = __nv_bfloat16;

namespace {

constexpr std::size_t kWorkspaceLimit = std::size_t(512) << 20;
constexpr double kWrongError = 1e-2;
int g_samples = 20;
bool g_verbose = false;

// ---- problems ---------------------------------------------------------------------------

struct ConvShape {
  const char* name;
  int c, h, w, k, r, pad;  // square filters, dilation 1
  int stride = 1;
};

constexpr ConvShape kShapes[] = {
    {"conv2/3x3", 64, 56, 56, 192, 3, 1},
    {"inception_3a/3x3", 96, 28, 28, 128, 3, 1},
    {"inception_3b/3x3", 128, 28, 28, 192, 3, 1},
    {"inception_3a/5x5", 16, 28, 28, 32, 5, 2},
    {"inception_4e/3x3", 160, 14, 14, 320, 3, 1},
    {"conv2/3x3_reduce", 64, 56, 56, 64, 1, 0},
    // conv1 (7x7 stride 2) as the data has it (3 channels) and zero-padded to 4 and 8 channels
    {"conv1/7x7_s2", 3, 224, 224, 64, 7, 3, 2},
    {"conv1/7x7_s2 C4", 4, 224, 224, 64, 7, 3, 2},
    {"conv1/7x7_s2 C8", 8, 224, 224, 64, 7, 3, 2},
};

enum class Dir { kFwd = 0, kBwdData = 1, kBwdFilter = 2 };  // numbered as ConvDirection
static_assert(int(Dir::kFwd) == int(ConvDirection::kForward) &&
              int(Dir::kBwdData) == int(ConvDirection::kBackwardData) &&
              int(Dir::kBwdFilter) == int(ConvDirection::kBackwardFilter));
constexpr const char* kDirNames[] = {"fwd", "dgrad", "wgrad"};

struct Problem {
  ConvShape s;
  int n;
  int p() const { return (s.h + 2 * s.pad - s.r) / s.stride + 1; }
  int q() const { return (s.w + 2 * s.pad - s.r) / s.stride + 1; }
  std::int64_t x_count() const { return std::int64_t(n) * s.c * s.h * s.w; }
  std::int64_t w_count() const { return std::int64_t(s.k) * s.c * s.r * s.r; }
  std::int64_t y_count() const { return std::int64_t(n) * s.k * p() * q(); }
  // 2*N*K*C*R*S*P*Q: the same for all three directions.
  double flops() const { return 2.0 * y_count() * s.c * s.r * s.r; }
};

double tflops(const Problem& p, float ms) {
  return p.flops() / (double(ms) * 1e9);
}

// x, w and dy hold random bf16 values in [-1, 1]; each direction writes one output. All NHWC
// (filters KRSC), bf16.
struct Buffers {
  DeviceBuffer x, w, dy;               // inputs
  DeviceBuffer y_out, dx_out, dw_out;  // outputs of fwd, dgrad, wgrad

  void* out(Dir d) const {
    return d == Dir::kFwd ? y_out.data() : d == Dir::kBwdData ? dx_out.data() : dw_out.data();
  }
  const DeviceBuffer& out_buffer(Dir d) const {
    return d == Dir::kFwd ? y_out : d == Dir::kBwdData ? dx_out : dw_out;
  }
};

void fill_random(DeviceBuffer& b, std::uint32_t seed) {
  std::vector<bf16> h(b.bytes() / sizeof(bf16));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (auto& v : h) v = __float2bfloat16_rn(dist(rng));
  b.upload(h.data(), b.bytes());
}

std::vector<bf16> download(const DeviceBuffer& b, cudaStream_t s) {
  std::vector<bf16> h(b.bytes() / sizeof(bf16));
  b.download(h.data(), b.bytes(), s);
  CUDA_CHECK(cudaStreamSynchronize(s));
  return h;
}

// ||a - ref|| / ||ref|| in double over the bf16 values (NaN when a holds NaN).
double rel_l2(const std::vector<bf16>& a, const std::vector<bf16>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double r = __bfloat162float(ref[i]), d = double(__bfloat162float(a[i])) - r;
    num += d * d;
    den += r * r;
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Median ms of one call of fn: 3 warm-up calls, then g_samples calls each timed with events.
float time_ms(cudaStream_t s, const std::function<void()>& fn) {
  Event a = make_event(), b = make_event();
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> t;
  for (int k = 0; k < g_samples; ++k) {
    CUDA_CHECK(cudaEventRecord(a, s));
    fn();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// ---- legacy API ---------------------------------------------------------------------------

constexpr const char* kFwdAlgos[] = {
    "IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING",
    "WINOGRAD",      "WINOGRAD_NONFUSED"};
constexpr const char* kBwdDataAlgos[] = {"ALGO_0",     "ALGO_1",   "FFT",
                                         "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
constexpr const char* kBwdFilterAlgos[] = {
    "ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};

const char* algo_name(Dir d, int a) {
  if (a < 0) return "?";
  if (d == Dir::kFwd) return a < 8 ? kFwdAlgos[a] : "?";
  if (d == Dir::kBwdData) return a < 6 ? kBwdDataAlgos[a] : "?";
  return a < 7 ? kBwdFilterAlgos[a] : "?";
}

struct LegacyDescs {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
};

LegacyDescs make_legacy_descs(const Problem& p) {
  LegacyDescs d{make_tensor_desc(), make_tensor_desc(), make_filter_desc(), make_conv_desc()};
  set_nhwc_desc(d.x, Nchw{p.n, p.s.c, p.s.h, p.s.w}, kernels::DType::kBF16);
  set_nhwc_desc(d.y, Nchw{p.n, p.s.k, p.p(), p.q()}, kernels::DType::kBF16);
  CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, p.s.k, p.s.c, p.s.r, p.s.r));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d.conv, p.s.pad, p.s.pad, p.s.stride, p.s.stride, 1, 1,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, CUDNN_TENSOR_OP_MATH));
  return d;
}

struct LegacyAlgo {
  int algo = -1;
  cudnnMathType_t math = CUDNN_TENSOR_OP_MATH;
  std::size_t ws = 0;
  float find_ms = -1.f, ms = -1.f;
};

cudnnStatus_t legacy_call(cudnnHandle_t h, const LegacyDescs& d, const Buffers& b, Dir dir,
                          const LegacyAlgo& a, void* ws, float beta) {
  const float alpha = 1.f;
  switch (dir) {
    case Dir::kFwd:
      return cudnnConvolutionForward(h, &alpha, d.x, b.x.data(), d.w, b.w.data(), d.conv,
                                     static_cast<cudnnConvolutionFwdAlgo_t>(a.algo), ws, kWorkspaceLimit,
                                     &beta, d.y, b.y_out.data());
    case Dir::kBwdData:
      return cudnnConvolutionBackwardData(h, &alpha, d.w, b.w.data(), d.y, b.dy.data(), d.conv,
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), ws,
                                          kWorkspaceLimit, &beta, d.x, b.dx_out.data());
    case Dir::kBwdFilter:
      return cudnnConvolutionBackwardFilter(h, &alpha, d.x, b.x.data(), d.y, b.dy.data(), d.conv,
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), ws,
                                            kWorkspaceLimit, &beta, d.w, b.dw_out.data());
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// The acceptable results of cudnnFind*AlgorithmEx, fastest first (as cuDNN sorts them).
std::vector<LegacyAlgo> legacy_find(cudnnHandle_t h, const LegacyDescs& d, const Buffers& b, Dir dir,
                                    void* ws) {
  constexpr int kMax = 16;
  int n = 0;
  std::vector<LegacyAlgo> out;
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, CUDNN_TENSOR_OP_MATH));
  auto keep = [&](const auto* perf) {
    for (int i = 0; i < n; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kWorkspaceLimit)
        out.push_back({static_cast<int>(perf[i].algo), perf[i].mathType, perf[i].memory, perf[i].time, -1.f});
  };
  if (dir == Dir::kFwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMax];
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, d.x, b.x.data(), d.w, b.w.data(), d.conv, d.y,
                                                       b.y_out.data(), kMax, &n, perf, ws, kWorkspaceLimit));
    keep(perf);
  } else if (dir == Dir::kBwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, d.w, b.w.data(), d.y, b.dy.data(), d.conv, d.x,
                                                            b.dx_out.data(), kMax, &n, perf, ws,
                                                            kWorkspaceLimit));
    keep(perf);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d.x, b.x.data(), d.y, b.dy.data(), d.conv,
                                                              d.w, b.dw_out.data(), kMax, &n, perf, ws,
                                                              kWorkspaceLimit));
    keep(perf);
  }
  return out;
}

// ---- backend API --------------------------------------------------------------------------

std::string status_text(cudnnStatus_t st) {
  return backend_status_text(st);
}

void set_attr(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, const char* name,
              cudnnBackendAttributeType_t t, std::int64_t n, const void* v, const char* file, int line) {
  const cudnnStatus_t st = cudnnBackendSetAttribute(d, a, t, n, v);
  if (st != CUDNN_STATUS_SUCCESS)
    check_failed("cuDNN backend", (std::string("set ") + name + " (" + std::to_string(int(a)) + ")").c_str(),
                 file, line, status_text(st));
}
#define SET_ATTR(desc, attr, type, count, ptr) \
  set_attr(desc, attr, #attr, type, count, ptr, __FILE__, __LINE__)

// The graph's and the plan's handle attributes are marked deprecated in cuDNN 9 headers (a device
// property descriptor may replace them): set them, but only say so once if cuDNN refuses.
void set_handle(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, const char* name,
                cudnnHandle_t h) {
  static std::set<int> told;
  const cudnnStatus_t st = cudnnBackendSetAttribute(d, a, CUDNN_TYPE_HANDLE, 1, &h);
  if (st != CUDNN_STATUS_SUCCESS && told.insert(int(a)).second)
    std::printf("note: set %s refused (%s); continuing without it\n", name, status_text(st).c_str());
}

BackendDesc create(cudnnBackendDescriptorType_t t) {
  return backend_create(t);
}

// One convolution operation in an operation graph, built by the engine's CudnnGraphConv (which
// owns the descriptors), with the number of global engines cuDNN has for it.
struct OpGraph {
  std::unique_ptr<CudnnGraphConv> conv;
  cudnnBackendDescriptor_t graph = nullptr;
  std::int64_t engine_count = 0;
};

OpGraph build_graph(cudnnHandle_t h, const Problem& p, Dir dir, float beta) {
  ConvGeom geom;
  geom.num_output = p.s.k;
  geom.kernel_h = geom.kernel_w = p.s.r;
  geom.stride_h = geom.stride_w = p.s.stride;
  geom.pad_h = geom.pad_w = p.s.pad;
  OpGraph g;
  g.conv = std::make_unique<CudnnGraphConv>(h, Nchw{p.n, p.s.c, p.s.h, p.s.w}, geom,
                                            Nchw{p.n, p.s.k, p.p(), p.q()},
                                            static_cast<ConvDirection>(int(dir)), beta);
  g.graph = g.conv->operation_graph();
  std::int64_t got = 0;
  BACKEND_CHECK(cudnnBackendGetAttribute(g.graph, CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT,
                                         CUDNN_TYPE_INT64, 1, &got, &g.engine_count));
  return g;
}

struct Knob {
  cudnnBackendKnobType_t type;
  std::int64_t value;
};

// An engine with its knob choices, finalized into an engine config.
struct Config {
  std::int64_t engine = -1;
  std::vector<Knob> knobs;
  std::string notes;
  BackendDesc engine_desc;
  std::vector<BackendDesc> choices;
  BackendDesc cfg;  // the heuristic's descriptor, or one built from engine + knobs
};

// Short names of cudnnBackendKnobType_t by value (cudnn_graph.h), for the printed knob summary.
constexpr const char* kKnobNames[] = {
    "splitk", "swizzle", "tile",    "tex",    "edge",  "kblock",   "ldga",      "ldgb",  "chunkk",
    "splith", "wino",    "mult",    "skbuf",  "tilek", "stages",   "red",       "ctask", "sksl",
    "idx",    "sliced",  "splitrs", "single", "ldgc",  "specfilt", "kcfg",      "ws",    "cga",
    "cgam",   "cgan",    "block",   "occ",    "arr",   "cpb",      "splitcols", "rows",  "cols",
    "load",   "ctas",    "streamk", "splitp", "tm",    "tn",       "warpspec",  "swapab"};
// (A cuDNN with more knob types prints the new ones as k<number>.)

std::string knob_text(const std::vector<Knob>& knobs) {
  std::string s;
  for (const Knob& k : knobs) {
    if (!s.empty()) s += ' ';
    const int t = int(k.type);
    s += (t >= 0 && t < int(std::size(kKnobNames)) ? std::string(kKnobNames[t]) : "k" + std::to_string(t)) +
         "=" + std::to_string(k.value);
  }
  return s.empty() ? "-" : s;
}

std::string config_key(std::int64_t engine, std::vector<Knob> knobs) {
  std::sort(knobs.begin(), knobs.end(), [](const Knob& a, const Knob& b) { return a.type < b.type; });
  std::string s = "eng" + std::to_string(engine);
  for (const Knob& k : knobs) s += " " + std::to_string(int(k.type)) + "=" + std::to_string(k.value);
  return s;
}

// Numerical and behaviour notes of a finalized engine, abbreviated ("TC" tensor cores, "RTC"
// runtime-compiled, ...); "?" when cuDNN does not say.
std::string engine_notes(cudnnBackendDescriptor_t engine) {
  static const char* kNum[] = {"TC",   "DOWNCVT", "REDPREC", "FFT",    "NONDET",
                               "WINO", "WINO4",   "WINO6",   "WINO13", "NAN"};
  static const char* kBeh[] = {"RTC", "INT8x32F", "INT8x32B", "GRAPH", "CUBLASLT"};
  cudnnBackendNumericalNote_t num[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  cudnnBackendBehaviorNote_t beh[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  std::int64_t nn = 0, nb = 0;
  std::string s;
  if (cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, num) != CUDNN_STATUS_SUCCESS)
    return "?";
  for (std::int64_t i = 0; i < nn; ++i)
    s += std::string(s.empty() ? "" : ",") + (std::size_t(num[i]) < std::size(kNum) ? kNum[num[i]] : "n?");
  if (cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                               CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &nb, beh) == CUDNN_STATUS_SUCCESS)
    for (std::int64_t i = 0; i < nb; ++i)
      s += std::string(s.empty() ? "" : ",") + (std::size_t(beh[i]) < std::size(kBeh) ? kBeh[beh[i]] : "b?");
  return s.empty() ? "-" : s;
}

// Reads engine index, knob choices and notes out of a finalized engine config (a heuristic's).
bool read_config(Config& c) {
  c.engine_desc = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t e = c.engine_desc;
  std::int64_t n = 0;
  if (cudnnBackendGetAttribute(c.cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                               &e) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &c.engine) !=
          CUDNN_STATUS_SUCCESS)
    return false;
  std::vector<BackendDesc> kc;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int i = 0; i < CUDNN_KNOB_TYPE_COUNTS; ++i) {
    kc.push_back(create(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR));
    raw.push_back(kc.back());
  }
  if (cudnnBackendGetAttribute(c.cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                               CUDNN_KNOB_TYPE_COUNTS, &n, raw.data()) == CUDNN_STATUS_SUCCESS) {
    for (std::int64_t i = 0; i < n && i < CUDNN_KNOB_TYPE_COUNTS; ++i) {
      Knob k{};
      std::int64_t got = 0;
      if (cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &got,
                                   &k.type) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1, &got,
                                   &k.value) == CUDNN_STATUS_SUCCESS)
        c.knobs.push_back(k);
    }
  }
  c.notes = engine_notes(e);
  return true;
}

// Builds the config of engine `engine` of graph g with these knob choices (none: the engine's
// defaults). Returns the status of the first finalize that failed (the engine does not support
// the graph, or a knob value is out of range).
cudnnStatus_t make_config(const OpGraph& g, std::int64_t engine, const std::vector<Knob>& knobs, Config& c) {
  c.engine = engine;
  c.knobs = knobs;
  c.engine_desc = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t graph = g.graph;
  SET_ATTR(c.engine_desc, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
  SET_ATTR(c.engine_desc, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &engine);
  if (cudnnStatus_t st = cudnnBackendFinalize(c.engine_desc); st != CUDNN_STATUS_SUCCESS) return st;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (const Knob& k : knobs) {
    c.choices.push_back(create(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR));
    SET_ATTR(c.choices.back(), CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &k.type);
    SET_ATTR(c.choices.back(), CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1, &k.value);
    if (cudnnStatus_t st = cudnnBackendFinalize(c.choices.back()); st != CUDNN_STATUS_SUCCESS) return st;
    raw.push_back(c.choices.back());
  }
  c.cfg = create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
  cudnnBackendDescriptor_t e = c.engine_desc;
  SET_ATTR(c.cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &e);
  if (!raw.empty())
    SET_ATTR(c.cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR,
             std::int64_t(raw.size()), raw.data());
  if (cudnnStatus_t st = cudnnBackendFinalize(c.cfg); st != CUDNN_STATUS_SUCCESS) return st;
  c.notes = engine_notes(c.engine_desc);
  return CUDNN_STATUS_SUCCESS;
}

// The engine configs a heuristic mode proposes, best first; empty (and *why set) when the mode
// is not available for this graph.
std::vector<Config> heuristic_configs(const OpGraph& g, cudnnBackendHeurMode_t mode, std::string* why) {
  BackendDesc heur = create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  cudnnBackendDescriptor_t graph = g.graph;
  SET_ATTR(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
  SET_ATTR(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  if (cudnnStatus_t st = cudnnBackendFinalize(heur); st != CUDNN_STATUS_SUCCESS) {
    *why = "heuristic did not finalize: " + status_text(st);
    return {};
  }
  std::int64_t count = 0;
  if (cudnnStatus_t st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
      st != CUDNN_STATUS_SUCCESS) {
    *why = "result count not readable: " + status_text(st);
    return {};
  }
  std::vector<Config> out(static_cast<std::size_t>(count));
  std::vector<cudnnBackendDescriptor_t> raw;
  for (Config& c : out) {
    c.cfg = create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    raw.push_back(c.cfg);
  }
  std::int64_t got = 0;
  if (count > 0) {
    if (cudnnStatus_t st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw.data());
        st != CUDNN_STATUS_SUCCESS) {
      *why = "results not readable: " + status_text(st);
      return {};
    }
  }
  out.resize(static_cast<std::size_t>(std::clamp<std::int64_t>(got, 0, count)));
  return out;
}

struct Plan {
  BackendDesc plan;
  std::int64_t workspace = 0;
};

cudnnStatus_t make_plan(cudnnHandle_t h, const Config& c, Plan& p) {
  p.plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  cudnnBackendDescriptor_t cfg = c.cfg;
  set_handle(p.plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, "CUDNN_ATTR_EXECUTION_PLAN_HANDLE", h);
  SET_ATTR(p.plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg);
  if (cudnnStatus_t st = cudnnBackendFinalize(p.plan); st != CUDNN_STATUS_SUCCESS) return st;
  std::int64_t got = 0;
  BACKEND_CHECK(cudnnBackendGetAttribute(p.plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                                         1, &got, &p.workspace));
  return CUDNN_STATUS_SUCCESS;
}

BackendDesc make_variant_pack(const Buffers& b, Dir dir, void* ws) {
  if (dir == Dir::kFwd) return backend_conv_pack(b.x.data(), b.w.data(), b.y_out.data(), ws);
  if (dir == Dir::kBwdData) return backend_conv_pack(b.dx_out.data(), b.w.data(), b.dy.data(), ws);
  return backend_conv_pack(b.x.data(), b.dw_out.data(), b.dy.data(), ws);
}

// ---- one shape and direction ------------------------------------------------------------

struct Result {
  std::string source;  // "A#0": heuristic mode A's first proposal; "global": engine index, default knobs
  std::int64_t engine = -1;
  std::vector<Knob> knobs;
  std::string notes;
  double ws_mib = 0;
  float ms = -1.f;
  double err = 0;
};

struct Tally {
  int offered = 0, duplicate = 0, unreadable = 0, not_finalized = 0, too_big = 0, run_failed = 0, timed = 0;
  double build_s = 0;              // spent finalizing plans (runtime-compiled engines compile here)
  std::map<std::string, int> why;  // finalize failures by status
};

struct Context {
  cudnnHandle_t h;
  cudaStream_t s;
  void* ws;
  int top;
  bool global;
  nlohmann::json* json;
};

void record(const Context& ctx, const Problem& p, Dir dir, const std::string& api, const std::string& engine,
            float ms, double ws_mib, double err, float beta) {
  ctx.json->push_back({{"shape", p.s.name},
                       {"direction", kDirNames[int(dir)]},
                       {"api", api},
                       {"engine", engine},
                       {"beta", beta},
                       {"ms", ms},
                       {"tflops", tflops(p, ms)},
                       {"workspace_mib", ws_mib},
                       {"error", err}});
}

// Verifies then times one backend config; appends to results or counts why not.
void try_config(const Context& ctx, Dir dir, const Buffers& b, const std::vector<bf16>& ref, Config& c,
                const std::string& source, std::set<std::string>& seen, Tally& t,
                std::vector<Result>& results) {
  const std::string key = config_key(c.engine, c.knobs);
  if (!seen.insert(key).second) {
    ++t.duplicate;
    return;
  }
  Plan plan;
  const auto t0 = std::chrono::steady_clock::now();
  const cudnnStatus_t st = make_plan(ctx.h, c, plan);
  t.build_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (st != CUDNN_STATUS_SUCCESS) {
    ++t.not_finalized;
    ++t.why[cudnnGetErrorString(st)];
    if (g_verbose)
      std::printf("      %-8s %s: plan not finalized: %s\n", source.c_str(), key.c_str(),
                  status_text(st).c_str());
    return;
  }
  if (plan.workspace > std::int64_t(kWorkspaceLimit)) {
    ++t.too_big;
    return;
  }
  BackendDesc pack = make_variant_pack(b, dir, ctx.ws);
  const DeviceBuffer& out = b.out_buffer(dir);
  CUDA_CHECK(cudaMemsetAsync(out.data(), 0xff, out.bytes(), ctx.s));  // bf16 NaN: unwritten output shows
  if (cudnnStatus_t run = cudnnBackendExecute(ctx.h, plan.plan, pack); run != CUDNN_STATUS_SUCCESS) {
    ++t.run_failed;
    if (g_verbose)
      std::printf("      %-8s %s: execute failed: %s\n", source.c_str(), key.c_str(),
                  status_text(run).c_str());
    return;
  }
  const double err = rel_l2(download(out, ctx.s), ref);
  const float ms = time_ms(ctx.s, [&] { BACKEND_CHECK(cudnnBackendExecute(ctx.h, plan.plan, pack)); });
  ++t.timed;
  results.push_back({source, c.engine, c.knobs, c.notes, plan.workspace / 1048576.0, ms, err});
}

// Times the engine configs of `results` (best first) again on a graph with beta = 1.
void backend_beta1(const Context& ctx, const Problem& p, Dir dir, const Buffers& b,
                   const std::vector<Result>& results) {
  OpGraph g = build_graph(ctx.h, p, dir, 1.f);
  for (std::size_t i = 0; i < results.size() && i < 3; ++i) {
    const Result& r = results[i];
    Config c;
    Plan plan;
    cudnnStatus_t st = make_config(g, r.engine, r.knobs, c);
    if (st == CUDNN_STATUS_SUCCESS) st = make_plan(ctx.h, c, plan);
    if (st != CUDNN_STATUS_SUCCESS || plan.workspace > std::int64_t(kWorkspaceLimit)) {
      std::printf("      beta=1 eng%-4lld %-32s not available with beta = 1 (%s)\n", (long long)r.engine,
                  knob_text(r.knobs).c_str(), cudnnGetErrorString(st));
      continue;
    }
    BackendDesc pack = make_variant_pack(b, dir, ctx.ws);
    CUDA_CHECK(cudaMemsetAsync(b.out(dir), 0, b.out_buffer(dir).bytes(), ctx.s));
    if (cudnnBackendExecute(ctx.h, plan.plan, pack) != CUDNN_STATUS_SUCCESS) {
      std::printf("      beta=1 eng%-4lld %-32s failed to run\n", (long long)r.engine,
                  knob_text(r.knobs).c_str());
      continue;
    }
    const float ms = time_ms(ctx.s, [&] { BACKEND_CHECK(cudnnBackendExecute(ctx.h, plan.plan, pack)); });
    std::printf("      beta=1 eng%-4lld %-32s %7.1f MiB %9.4f ms %7.1f TFLOP/s  (beta=0: %.4f ms)\n",
                (long long)r.engine, knob_text(r.knobs).c_str(), plan.workspace / 1048576.0, ms,
                tflops(p, ms), r.ms);
    record(ctx, p, dir, "backend", config_key(r.engine, r.knobs), ms, plan.workspace / 1048576.0, -1, 1.f);
  }
}

void bench_direction(const Context& ctx, const Problem& p, Dir dir, const Buffers& b, const LegacyDescs& ld) {
  const char* dn = kDirNames[int(dir)];
  const auto start = std::chrono::steady_clock::now();
  // 1. legacy: re-time the three best Find results, the fastest one gives the reference.
  std::vector<LegacyAlgo> found = legacy_find(ctx.h, ld, b, dir, ctx.ws);
  if (found.size() > 3) found.resize(3);
  for (LegacyAlgo& a : found) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(ld.conv, a.math));
    a.ms = time_ms(ctx.s, [&] { CUDNN_CHECK(legacy_call(ctx.h, ld, b, dir, a, ctx.ws, 0.f)); });
  }
  std::sort(found.begin(), found.end(), [](const LegacyAlgo& a, const LegacyAlgo& c) { return a.ms < c.ms; });
  if (found.empty()) {
    std::printf("  %-6s legacy: no algorithm within %zu MiB: nothing to compare\n", dn,
                kWorkspaceLimit >> 20);
    return;
  }
  const DeviceBuffer& out = b.out_buffer(dir);
  auto legacy_output = [&](const LegacyAlgo& a) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(ld.conv, a.math));
    CUDA_CHECK(cudaMemsetAsync(out.data(), 0xff, out.bytes(), ctx.s));
    CUDNN_CHECK(legacy_call(ctx.h, ld, b, dir, a, ctx.ws, 0.f));
    return download(out, ctx.s);
  };
  const LegacyAlgo& best = found[0];
  const std::vector<bf16> ref = legacy_output(best);
  std::printf("  %-6s legacy algo %d %-22s ws %7.1f MiB  find %.4f ms  median %9.4f ms %7.1f TFLOP/s\n", dn,
              best.algo, algo_name(dir, best.algo), best.ws / 1048576.0, best.find_ms, best.ms,
              tflops(p, best.ms));
  for (std::size_t i = 1; i < found.size(); ++i)
    std::printf("         (legacy algo %d %-22s %9.4f ms, differs from the reference by %.2e)\n",
                found[i].algo, algo_name(dir, found[i].algo), found[i].ms,
                rel_l2(legacy_output(found[i]), ref));
  record(ctx, p, dir, "legacy", "algo " + std::to_string(best.algo), best.ms, best.ws / 1048576.0, 0, 0.f);

  // 2. backend: heuristics A and B, then every global engine with default knobs.
  std::vector<Result> results;
  Tally t;
  try {
    OpGraph g = build_graph(ctx.h, p, dir, 0.f);
    std::set<std::string> seen;
    std::string heur_notes;
    for (auto [mode, tag] : {std::pair{CUDNN_HEUR_MODE_A, "A"}, std::pair{CUDNN_HEUR_MODE_B, "B"}}) {
      std::string why;
      std::vector<Config> cfgs = heuristic_configs(g, mode, &why);
      heur_notes += std::string(heur_notes.empty() ? "" : ", ") + "mode " + tag + ": " +
                    (why.empty() ? std::to_string(cfgs.size()) + " configs" : why);
      for (std::size_t i = 0; i < cfgs.size(); ++i) {
        ++t.offered;
        if (!read_config(cfgs[i])) {
          ++t.unreadable;
          continue;
        }
        try_config(ctx, dir, b, ref, cfgs[i], std::string(tag) + "#" + std::to_string(i), seen, t, results);
      }
    }
    int unsupported = 0;
    if (ctx.global)
      for (std::int64_t e = 0; e < g.engine_count; ++e) {
        Config c;
        if (cudnnStatus_t st = make_config(g, e, {}, c); st != CUDNN_STATUS_SUCCESS) {
          ++unsupported;
          if (g_verbose)
            std::printf("      global   eng%lld: not for this graph: %s\n", (long long)e,
                        status_text(st).c_str());
          continue;
        }
        ++t.offered;
        try_config(ctx, dir, b, ref, c, "global", seen, t, results);
      }
    std::printf("         backend: %s; %lld global engines%s\n", heur_notes.c_str(),
                (long long)g.engine_count,
                ctx.global ? (", " + std::to_string(unsupported) + " of them do not support it").c_str()
                           : " (not enumerated)");
  } catch (const CudaError& e) {
    std::printf("         backend: FAILED: %s\n", e.what());
  }
  std::string why;
  for (const auto& [st, n] : t.why) why += (why.empty() ? "" : ", ") + st + " x" + std::to_string(n);
  std::printf(
      "         configs: %d offered, %d duplicates, %d unreadable, %d plans not finalized%s%s%s, "
      "%d over %zu MiB, %d failed to run, %d timed; %.1f s building plans, %.1f s in all\n",
      t.offered, t.duplicate, t.unreadable, t.not_finalized, why.empty() ? "" : " (", why.c_str(),
      why.empty() ? "" : ")", t.too_big, kWorkspaceLimit >> 20, t.run_failed, t.timed, t.build_s,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  std::sort(results.begin(), results.end(), [](const Result& a, const Result& c) { return a.ms < c.ms; });
  if (results.empty()) return;
  std::printf("         %4s %-7s %-34s %-16s %9s %9s %7s %9s  %s\n", "rank", "engine", "knobs", "notes",
              "ws MiB", "ms", "TFLOP/s", "rel.err", "source");
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const bool wrong = !(r.err <= kWrongError);
    record(ctx, p, dir, "backend", config_key(r.engine, r.knobs), r.ms, r.ws_mib, r.err, 0.f);
    if (int(i) >= ctx.top && !wrong) continue;  // always show wrong results
    std::printf("         %4zu eng%-4lld %-34s %-16s %9.1f %9.4f %7.1f %9.2e  %s%s\n", i + 1,
                (long long)r.engine, knob_text(r.knobs).c_str(), r.notes.c_str(), r.ws_mib, r.ms,
                tflops(p, r.ms), r.err, r.source.c_str(), wrong ? "  WRONG" : "");
  }
  const auto right =
      std::find_if(results.begin(), results.end(), [](const Result& r) { return r.err <= kWrongError; });
  if (right != results.end())
    std::printf("         fastest correct backend config: %.2fx the legacy best's speed\n",
                best.ms / right->ms);

  // 3. backward filter accumulates in a step: beta = 1 for the legacy candidates (as the engine
  // re-times them) and the best correct backend configs.
  if (dir != Dir::kBwdFilter) return;
  CUDA_CHECK(cudaMemsetAsync(b.dw_out.data(), 0, b.dw_out.bytes(), ctx.s));
  for (const LegacyAlgo& a : found) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(ld.conv, a.math));
    const float ms = time_ms(ctx.s, [&] { CUDNN_CHECK(legacy_call(ctx.h, ld, b, dir, a, ctx.ws, 1.f)); });
    std::printf("      beta=1 legacy algo %d %-22s %9.4f ms %7.1f TFLOP/s  (beta=0: %.4f ms)\n", a.algo,
                algo_name(dir, a.algo), ms, tflops(p, ms), a.ms);
    record(ctx, p, dir, "legacy", "algo " + std::to_string(a.algo), ms, a.ws / 1048576.0, -1, 1.f);
  }
  std::vector<Result> good;
  for (const Result& r : results)
    if (r.err <= kWrongError) good.push_back(r);
  try {
    backend_beta1(ctx, p, dir, b, good);
  } catch (const CudaError& e) {
    std::printf("      beta=1 backend: FAILED: %s\n", e.what());
  }
}

void bench_shape(const Context& ctx, const Problem& p, const std::string& dirs) {
  std::printf(
      "\n== %s  N=%d C=%d %dx%d -> K=%d %dx%d pad %d stride %d -> %dx%d  (%.1f GFLOP per direction)\n",
      p.s.name, p.n, p.s.c, p.s.h, p.s.w, p.s.k, p.s.r, p.s.r, p.s.pad, p.s.stride, p.p(), p.q(),
      p.flops() / 1e9);
  Buffers b{DeviceBuffer(p.x_count() * sizeof(bf16)), DeviceBuffer(p.w_count() * sizeof(bf16)),
            DeviceBuffer(p.y_count() * sizeof(bf16)), DeviceBuffer(p.y_count() * sizeof(bf16)),
            DeviceBuffer(p.x_count() * sizeof(bf16)), DeviceBuffer(p.w_count() * sizeof(bf16))};
  fill_random(b.x, 1);
  fill_random(b.w, 2);
  fill_random(b.dy, 3);
  const LegacyDescs ld = make_legacy_descs(p);
  for (Dir d : {Dir::kFwd, Dir::kBwdData, Dir::kBwdFilter})
    if (dirs.find(kDirNames[int(d)]) != std::string::npos) bench_direction(ctx, p, d, b, ld);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cuDNN backend-API engines vs the legacy API on GoogLeNet's bf16 NHWC convolutions"};
  int batch = 128, top = 5;
  std::string shapes, dirs = "fwd,dgrad,wgrad", json_out;
  bool no_global = false;
  app.add_option("--batch", batch, "batch size");
  app.add_option("--samples", g_samples, "timed calls per measurement (median reported, >= 20)");
  app.add_option("--shapes", shapes, "only shapes whose name contains one of these (comma-separated)");
  app.add_option("--dirs", dirs, "directions: fwd,dgrad,wgrad");
  app.add_option("--top", top, "backend configs printed per shape and direction");
  app.add_flag("--no-global", no_global, "only the heuristics' configs, not every global engine index");
  app.add_flag("--verbose", g_verbose, "print why each config was skipped");
  app.add_option("--json", json_out, "write every measurement to this file (JSON array)");
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a run killed at its time limit
  if (gpu_count() == 0) {
    std::fprintf(stderr, "bench_cudnn_engines: %s\n", no_gpu_reason().c_str());
    return 1;
  }
  g_samples = std::max(g_samples, 20);
  try {
    std::printf("incept bench_cudnn_engines  commit %s  GPU %s  cuDNN %zu  batch %d  samples %d (median)\n",
                INCEPT_GIT_COMMIT, describe_gpu(0).c_str(), cudnnGetVersion(), batch, g_samples);
    std::printf(
        "bf16 NHWC tensors, KRSC filters, fp32 compute; workspace limit %zu MiB; rel.err > %.0e is WRONG\n",
        kWorkspaceLimit >> 20, kWrongError);
    Stream s = make_stream();
    CudnnHandle h = make_cudnn();
    CUDNN_CHECK(cudnnSetStream(h, s));
    DeviceBuffer ws(kWorkspaceLimit);
    nlohmann::json json = nlohmann::json::array();
    const Context ctx{h, s, ws.data(), top, !no_global, &json};
    for (const ConvShape& shape : kShapes) {
      bool wanted = shapes.empty();
      for (std::size_t at = 0; !wanted && at <= shapes.size();) {
        const std::size_t comma = std::min(shapes.find(',', at), shapes.size());
        const std::string part = shapes.substr(at, comma - at);
        wanted = !part.empty() && std::string(shape.name).find(part) != std::string::npos;
        at = comma + 1;
      }
      if (!wanted) continue;
      bench_shape(ctx, Problem{shape, batch}, dirs);
      // Rewritten after every shape so that a run stopped at a time limit keeps what it measured.
      if (!json_out.empty()) std::ofstream(json_out) << json.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cudnn_engines: %s\n", e.what());
    return 1;
  }
  return 0;
}

// One direction of one convolution through cuDNN's backend (graph) API: a one-operation graph
// over channels-last views, engine configs from cuDNN's heuristics (mode A), the fastest of
// them chosen by timing, and the call of a step.
//
// Why beside the legacy API (engine/cudnn_conv.h): cudnnFind*AlgorithmEx only reaches the eight
// legacy algorithms. On an H200 the backend engines (Hopper kernels among them) ran GoogLeNet's
// bf16 channels-last 3x3 layers 1.3-3.3x faster (benchmarks/bench_cudnn_engines.cpp: conv2/3x3
// forward 0.453 -> 0.183 ms, backward data 0.235 -> 0.181, backward filter 0.273 -> 0.206).
// CudnnConv keeps its legacy choice and uses a plan from here only where it measured faster.
//
// The scalars alpha = 1 and beta (0 or 1) are part of the graph, so a plan serves the one beta
// it was built for. Tensor pointers must be 16-byte aligned (the byte alignment the graph
// declares); `fits` says whether a call's pointers are.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "engine/owners.h"
#include "kernels/shapes.h"

namespace incept {

using BackendDesc = UniqueHandle<cudnnBackendDescriptor_t, cudnnBackendDestroyDescriptor>;

// cuDNN's status text with its last error message ("CUDNN_STATUS_NOT_SUPPORTED (...)").
std::string backend_status_text(cudnnStatus_t st);
// A backend call that must succeed: a failure throws CudaError naming the call (check.h).
void backend_check(cudnnStatus_t st, const char* what, const char* file, int line);
#define BACKEND_CHECK(expr) ::incept::backend_check((expr), #expr, __FILE__, __LINE__)
// A new backend descriptor of type t (throws if cuDNN cannot make one).
BackendDesc backend_create(cudnnBackendDescriptorType_t t);
// A finalized bf16 tensor descriptor of a channels-last view: logical dims {N, C, H, W}, pixel
// stride P = nstride() / (H * W) (= C when dense; filters: {K, C, R, S} dense is KRSC), pointers
// 16-byte aligned; `uid` names it in a variant pack.
BackendDesc backend_nhwc_tensor(std::int64_t uid, const Nchw& s);
// The tensor ids of a convolution graph's variant pack: the activation side (x or dx), the
// filter (w or dw), the output side (y or dy).
constexpr std::int64_t kConvUidX = 1, kConvUidW = 2, kConvUidY = 3;
// A finalized variant pack of those three pointers and the workspace.
BackendDesc backend_conv_pack(const void* x, const void* w, const void* y, void* workspace);

// Mean ms of one call of fn on stream s over `reps` calls after two warm-up calls (CUDA events).
// Synchronizes: for choosing algorithms when a net is planned, never inside a step.
float plan_time_ms(cudaStream_t s, int reps, const std::function<void()>& fn);

enum class ConvDirection { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };

class CudnnGraphConv {
 public:
  // x, y: channels-last bf16 views (element (n, c, h, w) at n * nstride() + (h * W + w) * P + c,
  // P = nstride() / (H * W)); filters KRSC dense; fp32 compute. beta: 0 overwrites the output
  // (y, dx or dw), 1 adds to it.
  CudnnGraphConv(cudnnHandle_t h, const Nchw& x, const ConvGeom& g, const Nchw& y, ConvDirection dir,
                 float beta);

  // Times up to max_configs of the heuristic's proposals (skipping ones whose notes say
  // non-deterministic when `deterministic`, and any with reduced-precision reduction, FFT or
  // Winograd) on these buffers, whose contents the search may overwrite, and keeps the
  // fastest. Returns its time in ms, or -1 when none could run. Synchronizes: planning only.
  // x, w, y: the activation side (x or dx), the filter (w or dw), the output side (y or dy).
  float choose(cudnnHandle_t h, void* x, void* w, void* y, void* workspace, std::size_t workspace_bytes,
               bool deterministic, int max_configs = 12);

  bool ready() const { return static_cast<bool>(plan_); }
  std::size_t workspace_bytes() const { return workspace_; }
  float time_ms() const { return time_ms_; }
  float beta() const { return beta_; }
  // Whether a call with these pointers may run the plan (16-byte aligned).
  static bool fits(const void* x, const void* w, const void* y);
  // Runs the chosen plan on the handle's stream (capturable in a CUDA graph).
  void run(cudnnHandle_t h, const void* x, const void* w, const void* y, void* workspace) const;
  // "graph engine 62 (heuristic #4) 0.205 ms ws 0.0 MiB" for logs.
  std::string describe() const;
  // The finalized operation graph (for tools that explore its engines: bench_cudnn_engines).
  cudnnBackendDescriptor_t operation_graph() const { return graph_; }

 private:
  float beta_ = 0.f;
  BackendDesc x_, w_, y_, conv_, op_, graph_;
  BackendDesc plan_;
  std::size_t workspace_ = 0;
  float time_ms_ = -1.f;
  std::string chosen_;
};

}  // namespace incept

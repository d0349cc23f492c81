// One convolution direction on cuDNN's backend API (cudnn_graph.h).
#include "engine/cudnn_graph.h"

#include <algorithm>
#include <cstdio>
#include <tuple>
#include <vector>

#include "engine/check.h"

namespace incept {

std::string backend_status_text(cudnnStatus_t st) {
  char msg[512] = {0};
  cudnnGetLastErrorString(msg, sizeof msg);
  std::string s = cudnnGetErrorString(st);
  if (msg[0] != '\0') s += std::string(" (") + msg + ")";
  return s;
}

void backend_check(cudnnStatus_t st, const char* what, const char* file, int line) {
  if (st != CUDNN_STATUS_SUCCESS) check_failed("cuDNN backend", what, file, line, backend_status_text(st));
}

BackendDesc backend_create(cudnnBackendDescriptorType_t t) {
  cudnnBackendDescriptor_t d = nullptr;
  BACKEND_CHECK(cudnnBackendCreateDescriptor(t, &d));
  return BackendDesc(d);
}

float plan_time_ms(cudaStream_t s, int reps, const std::function<void()>& fn) {
  Event a = make_event(), b = make_event();
  for (int i = 0; i < 2; ++i) fn();
  CUDA_CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < reps; ++i) fn();
  CUDA_CHECK(cudaEventRecord(b, s));
  CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms / reps;
}

namespace {

BackendDesc create(cudnnBackendDescriptorType_t t) {
  return backend_create(t);
}

constexpr std::int64_t kAlignment = 16;

// Sets one attribute that must be accepted (a refusal is a bug here, reported with its name).
void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
         std::int64_t n, const void* v) {
  backend_check(cudnnBackendSetAttribute(d, a, t, n, v),
                ("cudnnBackendSetAttribute(attribute " + std::to_string(int(a)) + ")").c_str(), __FILE__,
                __LINE__);
}
void set_desc(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendDescriptor_t v) {
  set(d, a, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
}

// Numerical notes that rule an engine out: results that differ from a plain fp32-accumulated
// convolution beyond bf16 rounding (seen: an engine with reduced-precision reduction at 1.3e-2
// relative error where the others are at 1e-4), or that vary from run to run.
bool acceptable(cudnnBackendDescriptor_t engine, bool deterministic) {
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  std::int64_t n = 0;
  if (cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, notes) != CUDNN_STATUS_SUCCESS)
    return false;
  for (std::int64_t i = 0; i < n; ++i) switch (notes[i]) {
      case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION:
      case CUDNN_NUMERICAL_NOTE_FFT:
      case CUDNN_NUMERICAL_NOTE_WINOGRAD:
      case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_4x4:
      case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_6x6:
      case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13:
        return false;
      case CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC:
        if (deterministic) return false;
        break;
      default:
        break;
    }
  return true;
}

}  // namespace

BackendDesc backend_nhwc_tensor(std::int64_t uid, const Nchw& s) {
  const std::int64_t hw = std::int64_t(s.h) * s.w, pix = s.nstride() / std::max<std::int64_t>(hw, 1);
  const std::int64_t dims[4] = {s.n, s.c, s.h, s.w}, strides[4] = {s.nstride(), 1, s.w * pix, pix};
  const cudnnDataType_t dt = CUDNN_DATA_BFLOAT16;
  BackendDesc d = create(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
  set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &kAlignment);
  BACKEND_CHECK(cudnnBackendFinalize(d));
  return d;
}

BackendDesc backend_conv_pack(const void* x, const void* w, const void* y, void* workspace) {
  const std::int64_t uids[3] = {kConvUidX, kConvUidW, kConvUidY};
  void* ptrs[3] = {const_cast<void*>(x), const_cast<void*>(w), const_cast<void*>(y)};
  BackendDesc pack = create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids);
  set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, ptrs);
  set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  BACKEND_CHECK(cudnnBackendFinalize(pack));
  return pack;
}

CudnnGraphConv::CudnnGraphConv(cudnnHandle_t h, const Nchw& x, const ConvGeom& g, const Nchw& y,
                               ConvDirection dir, float beta)
    : beta_(beta) {
  x_ = backend_nhwc_tensor(kConvUidX, x);
  w_ = backend_nhwc_tensor(kConvUidW, Nchw{g.num_output, x.c, g.kernel_h, g.kernel_w});
  y_ = backend_nhwc_tensor(kConvUidY, y);
  conv_ = create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const std::int64_t dims = 2, pads[2] = {g.pad_h, g.pad_w}, strides[2] = {g.stride_h, g.stride_w},
                     dil[2] = {1, 1};
  set(conv_, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  set(conv_, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  set(conv_, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  set(conv_, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pads);
  set(conv_, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pads);
  set(conv_, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil);
  set(conv_, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, strides);
  BACKEND_CHECK(cudnnBackendFinalize(conv_));

  const float alpha = 1.f;
  struct Names {
    cudnnBackendDescriptorType_t op;
    cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
  };
  static constexpr Names kNames[3] = {
      {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
      {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
      {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA}};
  const Names& n = kNames[int(dir)];
  op_ = create(n.op);
  set_desc(op_, n.x, x_);
  set_desc(op_, n.w, w_);
  set_desc(op_, n.y, y_);
  set_desc(op_, n.conv, conv_);
  set(op_, n.alpha, CUDNN_TYPE_FLOAT, 1, &alpha);
  set(op_, n.beta, CUDNN_TYPE_FLOAT, 1, &beta);
  BACKEND_CHECK(cudnnBackendFinalize(op_));

  graph_ = create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  set_desc(graph_, CUDNN_ATTR_OPERATIONGRAPH_OPS, op_);
  set(graph_, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
  BACKEND_CHECK(cudnnBackendFinalize(graph_));
}

float CudnnGraphConv::choose(cudnnHandle_t h, void* x, void* w, void* y, void* workspace,
                             std::size_t workspace_bytes, bool deterministic, int max_configs) {
  plan_.reset();
  time_ms_ = -1.f;
  if (!fits(x, w, y) || !fits(workspace, nullptr, nullptr)) return -1.f;
  BackendDesc heur = create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  set_desc(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph_);
  set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  if (cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS) return -1.f;
  std::int64_t count = 0;
  if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               nullptr) != CUDNN_STATUS_SUCCESS ||
      count <= 0)
    return -1.f;
  std::vector<BackendDesc> cfgs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (std::int64_t i = 0; i < count; ++i) {
    cfgs.push_back(create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(cfgs.back());
  }
  std::int64_t got = 0;
  if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                               &got, raw.data()) != CUDNN_STATUS_SUCCESS)
    return -1.f;
  cudaStream_t s = nullptr;
  CUDNN_CHECK(cudnnGetStream(h, &s));
  int tried = 0;
  for (std::int64_t i = 0; i < got && tried < max_configs; ++i) {
    BackendDesc engine = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    cudnnBackendDescriptor_t e = engine;
    std::int64_t one = 0, index = -1;
    if (cudnnBackendGetAttribute(cfgs[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &one,
                                 &e) != CUDNN_STATUS_SUCCESS ||
        !acceptable(e, deterministic))
      continue;
    cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &one, &index);
    BackendDesc plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    set_desc(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfgs[i]);
    if (cudnnBackendFinalize(plan) != CUDNN_STATUS_SUCCESS) continue;
    std::int64_t ws = 0;
    if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &one,
                                 &ws) != CUDNN_STATUS_SUCCESS ||
        ws < 0 || std::size_t(ws) > workspace_bytes)
      continue;
    ++tried;
    BackendDesc pack = backend_conv_pack(x, w, y, workspace);
    if (cudnnBackendExecute(h, plan, pack) != CUDNN_STATUS_SUCCESS) {
      cudaGetLastError();
      continue;
    }
    // The same timing as the legacy choice it competes with (CudnnConv::choose_graph_plans).
    const float ms = plan_time_ms(s, 5, [&] { BACKEND_CHECK(cudnnBackendExecute(h, plan, pack)); });
    if (time_ms_ < 0.f || ms < time_ms_) {
      time_ms_ = ms;
      plan_ = std::move(plan);
      workspace_ = std::size_t(ws);
      chosen_ = "engine " + std::to_string(index) + " (heuristic #" + std::to_string(i) + ")";
    }
  }
  return time_ms_;
}

bool CudnnGraphConv::fits(const void* x, const void* w, const void* y) {
  auto ok = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % kAlignment == 0; };
  return ok(x) && ok(w) && ok(y);
}

void CudnnGraphConv::run(cudnnHandle_t h, const void* x, const void* w, const void* y,
                         void* workspace) const {
  if (!plan_) throw Error("CudnnGraphConv::run: no plan was chosen");
  BackendDesc pack = backend_conv_pack(x, w, y, workspace);
  BACKEND_CHECK(cudnnBackendExecute(h, plan_, pack));
}

std::string CudnnGraphConv::describe() const {
  if (!plan_) return "no backend plan";
  char buf[160];
  std::snprintf(buf, sizeof buf, "graph %s %.3f ms ws %.1f MiB", chosen_.c_str(), time_ms_,
                workspace_ / 1048576.0);
  return buf;
}

}  // namespace incept

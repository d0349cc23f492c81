// GpuNet's branch lanes (GpuNetOptions::branch_lanes): which stream each layer of a BranchRegion
// runs on, every lane's handles and scratch, and the fork and join of a region.
#include <algorithm>

#include "engine/check.h"
#include "engine/gpu_net_layer.h"
#include "kernels/bias_relu_gpu.h"

namespace incept {

void GpuNet::plan_lanes() {
  const int n = int(layers_.size());
  const int want = std::max(opt_.branch_lanes, 1);
  lane_of_.assign(n, 0);
  int lanes = 1;
  for (const BranchRegion& r : plan_.regions)
    for (int l = r.first; l <= r.last; ++l) {
      lane_of_[l] = r.branch[l - r.first] % want;
      lanes = std::max(lanes, lane_of_[l] + 1);
    }
  region_lanes_.clear();
  for (const BranchRegion& r : plan_.regions) {
    std::vector<int> side;
    for (int l = r.first; l <= r.last; ++l)
      if (lane_of_[l] > 0 && std::find(side.begin(), side.end(), lane_of_[l]) == side.end())
        side.push_back(lane_of_[l]);
    std::sort(side.begin(), side.end());
    region_lanes_.push_back(side);
  }
  // What each lane's layers need (bytes).
  struct Need {
    std::size_t ws = 0, staging = 0, bias_partial = 0, fc_partial = 0, gemm_partial = 0, cols = 0;
    bool aux = false;  // a Winograd convolution on two streams
  };
  std::vector<Need> need(lanes);
  const bool train = plan_.options.training;
  for (int l = 0; l < n; ++l) {
    const Layer& L = *layers_[l];
    Need& d = need[lane_of_[l]];
    if (L.plan->kind() == LayerKind::kConvolution && train) {
      const Nchw& y = L.out_shape[0];
      d.bias_partial =
          std::max(d.bias_partial, 4 * (opt_.channels_last ? kernels::relu_bias_bwd_nhwc_scratch(y)
                                                           : kernels::relu_bias_bwd_scratch(y)));
    }
    if (L.conv) {
      d.ws = std::max(d.ws, L.conv->workspace_bytes());
      if (L.staged) d.staging = std::max(d.staging, std::size_t(L.out_shape[0].count()) * esize_);
    }
    if (L.fc && train) d.fc_partial = std::max(d.fc_partial, 4 * L.fc->wgrad_partial_elems());
    if (L.gemm1x1 && train) d.gemm_partial = std::max(d.gemm_partial, L.gemm1x1->partial_elems() * esize_);
    if (L.spatial_gemm && !L.rows_in_place) {
      const Nchw& y = L.out_shape[0];
      const std::size_t rows_kc = std::size_t(L.chunk_images) * y.h * y.w * L.fc->shape().k * esize_;
      // One chunk's rows (a layer that does not keep its own) and, in backward, the rows'
      // gradient: the weight gradient has read the rows before the data gradient's GEMM writes
      // into the same buffer (one stream).
      if (!L.cols.bytes() || (train && L.in_diff[0])) d.cols = std::max(d.cols, rows_kc);
    }
    if (L.winograd) {
      d.cols = std::max(d.cols, L.winograd_ws * (L.winograd_two_streams ? 2 : 1));
      d.aux = d.aux || L.winograd_two_streams;
    }
  }
  auto buffer = [](std::size_t bytes) { return bytes ? DeviceBuffer(bytes) : DeviceBuffer(); };
  // Lane 0: the net's own members, sized again for its layers only.
  const Need& z = need[0];
  workspace_ = buffer(std::max<std::size_t>(z.ws, 256));
  staging_ = buffer(z.staging);
  bias_partial_ = buffer(std::max<std::size_t>(z.bias_partial, 4));
  fc_partial_ = buffer(z.fc_partial);
  gemm_partial_ = buffer(z.gemm_partial);
  cols_ = buffer(z.cols);
  lanes_.clear();
  auto first = std::make_unique<Lane>();
  first->stream = stream_;
  first->cudnn = cudnn_;
  first->cublas = cublas_;
  first->ws = workspace_.data();
  first->ws_bytes = workspace_.bytes();
  first->cublas_ws = cublas_ws_.data();
  first->cublas_ws_bytes = cublas_ws_.bytes();
  first->staging = staging_.data();
  first->bias_partial = bias_partial_.as<float>();
  first->fc_partial = fc_partial_.as<float>();
  first->gemm_partial = gemm_partial_.data();
  first->cols = cols_.data();
  auto add_aux = [&](Lane& a, const Need& d) {
    if (!d.aux) return;
    a.own_aux = make_stream();
    a.aux = a.own_aux;
    a.own_aux_cublas_ws = DeviceBuffer(cublas_ws_.bytes());
    a.aux_cublas_ws = a.own_aux_cublas_ws.data();
    a.aux_fork = make_event(false);
    a.aux_join = make_event(false);
  };
  add_aux(*first, z);
  lanes_.push_back(std::move(first));
  for (int k = 1; k < lanes; ++k) {
    auto a = std::make_unique<Lane>();
    a->own_stream = make_stream();
    a->stream = a->own_stream;
    // One cuDNN and one cuBLAS handle for every lane (on CUDA 13 a cuBLAS handle costs 64 MiB of
    // device memory and a cuDNN one 10 MiB), bound to the running layer's stream (and cuBLAS
    // workspace) by bind_handles, as cuBLAS documents for several streams and PyTorch does with
    // its per-thread handles. Each lane has its own cuBLAS workspace of the main lane's size, so
    // cuBLAS chooses the same kernels on every lane (the results do not depend on branch_lanes;
    // tests/test_gpu_net.cpp checks it bitwise).
    a->cudnn = cudnn_;
    a->cublas = cublas_;
    a->own_cublas_ws = DeviceBuffer(cublas_ws_.bytes());
    a->cublas_ws = a->own_cublas_ws.data();
    a->cublas_ws_bytes = a->own_cublas_ws.bytes();
    const Need& d = need[k];
    a->own_ws = buffer(std::max<std::size_t>(d.ws, 256));
    a->ws = a->own_ws.data();
    a->ws_bytes = a->own_ws.bytes();
    a->own_staging = buffer(d.staging);
    a->staging = a->own_staging.data();
    a->own_bias_partial = buffer(std::max<std::size_t>(d.bias_partial, 4));
    a->bias_partial = a->own_bias_partial.as<float>();
    a->own_fc_partial = buffer(d.fc_partial);
    a->fc_partial = a->own_fc_partial.as<float>();
    a->own_gemm_partial = buffer(d.gemm_partial);
    a->gemm_partial = a->own_gemm_partial.data();
    a->own_cols = buffer(d.cols);
    a->cols = a->own_cols.data();
    a->join = make_event(false);
    add_aux(*a, d);
    lanes_.push_back(std::move(a));
  }
  handles_bound_ = lanes_[0].get();  // cudnn_ and cublas_ are on stream_, cublas_ with cublas_ws_
  fork_ = make_event(false);
  layer_done_.clear();
  if (lanes > 1)
    for (int l = 0; l < n; ++l) layer_done_.push_back(make_event(false));
}

// Branch lanes: a region's side lanes start after everything before it on the main stream
// (fork) and the main stream goes on after all of them (join); forward needs nothing else (each
// branch reads the fork blob and its own chain, and writes its own slice of the Concat).
void GpuNet::fork(const BranchRegion& r) {
  const auto& side = region_lanes_[&r - plan_.regions.data()];
  if (side.empty()) return;
  CUDA_CHECK(cudaEventRecord(fork_, stream_));
  for (int k : side) CUDA_CHECK(cudaStreamWaitEvent(lanes_[k]->stream, fork_, 0));
}

void GpuNet::join(const BranchRegion& r) {
  for (int k : region_lanes_[&r - plan_.regions.data()]) {
    CUDA_CHECK(cudaEventRecord(lanes_[k]->join, lanes_[k]->stream));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, lanes_[k]->join, 0));
  }
}

void GpuNet::bind_handles(const Lane& R) {
  if (handles_bound_ == &R) return;
  CUDNN_CHECK(cudnnSetStream(cudnn_, R.stream));
  CUBLAS_CHECK(cublasSetStream(cublas_, R.stream));  // this resets the workspace to cuBLAS's pool
  CUBLAS_CHECK(cublasSetWorkspace(cublas_, R.cublas_ws, R.cublas_ws_bytes));
  handles_bound_ = &R;
}

std::size_t GpuNet::lanes_bytes() const {
  std::size_t b = 0;
  for (const auto& a : lanes_)
    b += a->own_ws.bytes() + a->own_cublas_ws.bytes() + a->own_staging.bytes() + a->own_bias_partial.bytes() +
         a->own_fc_partial.bytes() + a->own_gemm_partial.bytes() + a->own_cols.bytes() +
         a->own_aux_cublas_ws.bytes();
  return b;
}

}  // namespace incept

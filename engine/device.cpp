// GPU discovery (device.h).
#include "engine/device.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <sstream>

#include "engine/check.h"
#include "kernels/device_facts.h"

namespace incept {

int gpu_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string no_gpu_reason() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no usable CUDA GPU ({}: {})", cudaGetErrorName(err), cudaGetErrorString(err));
  }
  if (n == 0) return "no CUDA GPU on this machine";
  return {};
}

std::vector<GpuInfo> list_gpus() {
  std::vector<GpuInfo> out;
  const int n = gpu_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    const int cc = kernels::compute_capability(i);  // INCEPT_CC_LIMIT applies
    out.push_back({i, p.name, cc / 10, cc % 10, p.totalGlobalMem, p.multiProcessorCount});
  }
  return out;
}

std::string describe_gpu(int index) {
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  const int cc = kernels::compute_capability(index);
  const std::string limited =
      cc != p.major * 10 + p.minor ? fmt::format(" taken as sm_{} (INCEPT_CC_LIMIT)", cc) : std::string();
  return fmt::format("{} (sm_{}{}{}, {} SMs, {:.1f} GiB)", p.name, p.major, p.minor, limited,
                     p.multiProcessorCount, static_cast<double>(p.totalGlobalMem) / (1 << 30));
}

std::vector<int> parse_gpu_list(const std::string& spec) {
  return parse_gpu_list(spec, gpu_count());
}

std::vector<int> parse_gpu_list(const std::string& spec, int device_count) {
  std::vector<int> ids;
  if (spec == "none" || spec == "cpu" || spec.empty()) return ids;
  const int n = device_count;
  if (spec == "all") {
    if (n == 0) throw Error("--gpus all: " + no_gpu_reason() + "; use --gpus none to run on the CPU");
    for (int i = 0; i < n; ++i) ids.push_back(i);
    return ids;
  }
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int id = -1;
    try {
      std::size_t used = 0;
      id = std::stoi(item, &used);
      if (used != item.size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0)
      throw Error(
          fmt::format("--gpus {}: '{}' is not a GPU index (use e.g. 0,1 or all or none)", spec, item));
    if (id >= n) {
      throw Error(n == 0
                      ? fmt::format("--gpus {}: {}; use --gpus none to run on the CPU", spec, no_gpu_reason())
                      : fmt::format("--gpus {}: GPU {} does not exist (this machine has {} GPU{}: 0..{})",
                                    spec, id, n, n == 1 ? "" : "s", n - 1));
    }
    for (int seen : ids)
      if (seen == id) throw Error(fmt::format("--gpus {}: GPU {} is listed twice", spec, id));
    ids.push_back(id);
  }
  return ids;
}

}  // namespace incept

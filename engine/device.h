// Which GPUs are here: count, names, and a reason string when there are none (tests
// print it when they skip; tools print it when --gpus asks for a missing device).
#pragma once

#include <string>
#include <vector>

namespace incept {

struct GpuInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  std::size_t memory_bytes = 0;
  int multiprocessors = 0;
};

// Number of usable CUDA devices (0 when there is no driver or no device; never throws).
int gpu_count();
// Why gpu_count() is 0, e.g. "no CUDA driver found (cudaGetDeviceCount: ...)"; empty if GPUs exist.
std::string no_gpu_reason();
std::vector<GpuInfo> list_gpus();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.2 GiB)"
std::string describe_gpu(int index);
// Parses "0,1", "all" or "none" against the devices present; throws Error with a clear
// message when an index is out of range or a GPU is asked for on a machine without one.
std::vector<int> parse_gpu_list(const std::string& spec);
// The same against `device_count` devices (tests, and callers that counted already).
std::vector<int> parse_gpu_list(const std::string& spec, int device_count);

}  // namespace incept

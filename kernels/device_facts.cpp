// Cached device attributes (device_facts.h). One relaxed atomic per device index: two threads
// that miss the cache together read the same attribute and store the same value.
#include "kernels/device_facts.h"

#include <cuda_runtime.h>

#include <atomic>
#include <string>

#include "engine/check.h"

namespace incept::kernels {
namespace {

constexpr int kCachedDevices = 64;           // devices beyond this are queried on every call
std::atomic<int> sm_counts[kCachedDevices];  // 0: not read yet
std::atomic<int> capabilities[kCachedDevices];

}  // namespace

int sm_count(int device) {
  const bool cached = device >= 0 && device < kCachedDevices;
  if (cached) {
    const int n = sm_counts[device].load(std::memory_order_relaxed);
    if (n > 0) return n;
  }
  int n = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  if (n <= 0) throw Error("GPU " + std::to_string(device) + " reports no multiprocessors");
  if (cached) sm_counts[device].store(n, std::memory_order_relaxed);
  return n;
}

int sm_count() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  return sm_count(device);
}

int compute_capability() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const bool cached = device >= 0 && device < kCachedDevices;
  if (cached) {
    const int cc = capabilities[device].load(std::memory_order_relaxed);
    if (cc > 0) return cc;
  }
  int major = 0, minor = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const int cc = major * 10 + minor;
  if (cached) capabilities[device].store(cc, std::memory_order_relaxed);
  return cc;
}

}  // namespace incept::kernels

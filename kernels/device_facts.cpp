// Cached device attributes (device_facts.h). One relaxed atomic per device index: two threads
// that miss the cache together read the same attribute and store the same value.
#include "kernels/device_facts.h"

#include <cuda_runtime.h>

#include <atomic>
#include <string>

#include "engine/check.h"

namespace incept::kernels {
namespace {

constexpr int kCachedDevices = 64;              // devices beyond this are queried on every call
std::atomic<int> sm_counts[kCachedDevices];     // 0: not read yet
std::atomic<int> capabilities[kCachedDevices];  // major * 10 + minor; 0: not read yet

// cache[device], read with `read` (a positive value) the first time.
template <typename Read>
int cached(std::atomic<int>* cache, int device, Read&& read) {
  const bool in_cache = device >= 0 && device < kCachedDevices;
  if (in_cache) {
    const int v = cache[device].load(std::memory_order_relaxed);
    if (v > 0) return v;
  }
  const int v = read();
  if (in_cache) cache[device].store(v, std::memory_order_relaxed);
  return v;
}

int current_device() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

}  // namespace

int sm_count(int device) {
  return cached(sm_counts, device, [&] {
    int n = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    if (n <= 0) throw Error("GPU " + std::to_string(device) + " reports no multiprocessors");
    return n;
  });
}

int sm_count() {
  return sm_count(current_device());
}

int compute_capability() {
  const int device = current_device();
  return cached(capabilities, device, [&] {
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
  });
}

}  // namespace incept::kernels

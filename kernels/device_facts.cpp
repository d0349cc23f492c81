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

}  // namespace incept::kernels

// Cached device attributes (device_facts.h). One relaxed atomic per device index: two threads
// that miss the cache together read the same attribute and store the same value.
#include "kernels/device_facts.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
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

int hardware_compute_capability(int device) {
  return cached(capabilities, device, [&] {
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
  });
}

int compute_capability(int device) {
  const int cc = hardware_compute_capability(device);
  const int limit = compute_capability_limit();
  return limit > 0 && limit < cc ? limit : cc;
}

int compute_capability() {
  return compute_capability(current_device());
}

int parse_compute_capability(const char* text) {
  if (text == nullptr) return -1;
  std::string s(text);
  if (s.rfind("sm_", 0) == 0) s = s.substr(3);
  // "MAJOR.MINOR" or the digits run together ("60", "120"); the minor is one digit either way.
  const std::size_t dot = s.find('.');
  std::string major = dot == std::string::npos ? s.substr(0, s.empty() ? 0 : s.size() - 1) : s.substr(0, dot);
  std::string minor = dot == std::string::npos ? s.substr(major.size()) : s.substr(dot + 1);
  auto digits = [](const std::string& t) {
    return !t.empty() && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(major) || !digits(minor) || major.size() > 2 || minor.size() != 1 || major[0] == '0') return -1;
  return std::stoi(major) * 10 + (minor[0] - '0');
}

int compute_capability_limit() {
  // Read once: the limit must not change while a net is built on it.
  static const int limit = [] {
    const char* v = std::getenv("INCEPT_CC_LIMIT");
    if (v == nullptr || *v == '\0') return 0;
    const int cc = parse_compute_capability(v);
    if (cc < 0)
      throw Error(std::string("INCEPT_CC_LIMIT='") + v +
                  "' is not a compute capability (e.g. 60, 6.0 or sm_60)");
    return cc;
  }();
  return limit;
}

}  // namespace incept::kernels

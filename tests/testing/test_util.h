// Shared test helpers: GPU skip with a printed reason, seeded random data, relative
// error, scratch directories that clean up after themselves.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/device.h"

// Skips the current test, printing why, when this machine has no CUDA GPU.
#define INCEPT_REQUIRE_GPU()                                                      \
  do {                                                                            \
    if (::incept::gpu_count() == 0) {                                             \
      std::string incept_reason_ = ::incept::no_gpu_reason();                     \
      std::printf("[  SKIPPED ] GPU test skipped: %s\n", incept_reason_.c_str()); \
      GTEST_SKIP() << incept_reason_;                                             \
    }                                                                             \
  } while (0)

#define INCEPT_REQUIRE_GPUS(n)                                                           \
  do {                                                                                   \
    if (::incept::gpu_count() < (n)) {                                                   \
      std::printf("[  SKIPPED ] needs %d GPUs, found %d\n", (n), ::incept::gpu_count()); \
      GTEST_SKIP() << "needs " << (n) << " GPUs";                                        \
    }                                                                                    \
  } while (0)

namespace incept::testing {

// Uniform values in [lo, hi) from a fixed seed (tests are reproducible).
std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float lo = -1.f, float hi = 1.f);
std::vector<double> random_doubles(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0);

// ||a - b|| / max(||b||, tiny); NaN anywhere gives +inf.
double rel_error(const float* a, const float* b, std::size_t n);
double rel_error(const std::vector<float>& a, const std::vector<float>& b);
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

// A fresh directory under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "incept_test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace incept::testing

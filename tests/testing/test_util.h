// Shared test helpers: GPU skip with a reason (a failure under INCEPT_REQUIRE_GPU=1), seeded
// random data, relative error, scratch directories that clean up after themselves.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/error.h"

// Skips the current test with the reason when this machine has no CUDA GPU; with
// INCEPT_REQUIRE_GPU=1 in the environment (every run on a GPU host) the test fails instead,
// with the same reason. A program whose tests all skip exits 77 (tests/testing/gtest_main.cpp).
#define INCEPT_REQUIRE_GPU()                                               \
  do {                                                                     \
    if (::incept::gpu_count() == 0) {                                      \
      const std::string incept_reason_ = ::incept::no_gpu_reason();        \
      if (::incept::testing::gpu_required())                               \
        GTEST_FAIL() << ::incept::testing::kGpuRequired << incept_reason_; \
      GTEST_SKIP() << "GPU test skipped: " << incept_reason_;              \
    }                                                                      \
  } while (0)

// The same for a test that needs at least n GPUs.
#define INCEPT_REQUIRE_GPUS(n)                                                                    \
  do {                                                                                            \
    if (::incept::gpu_count() < (n)) {                                                            \
      const std::string incept_reason_ =                                                          \
          "needs " + std::to_string(n) + " GPUs, found " + std::to_string(::incept::gpu_count()); \
      if (::incept::testing::gpu_required())                                                      \
        GTEST_FAIL() << ::incept::testing::kGpuRequired << incept_reason_;                        \
      GTEST_SKIP() << "GPU test skipped: " << incept_reason_;                                     \
    }                                                                                             \
  } while (0)

namespace incept::testing {

// True when INCEPT_REQUIRE_GPU is set to anything but "" or "0": GPU skips become failures.
bool gpu_required();
inline constexpr const char* kGpuRequired = "INCEPT_REQUIRE_GPU is set, so a missing GPU is a failure: ";

}  // namespace incept::testing

namespace incept::testing {

// Uniform values in [lo, hi) from a fixed seed (tests are reproducible).
std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float lo = -1.f, float hi = 1.f);
std::vector<double> random_doubles(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0);

// ||a - b|| / max(||b||, tiny); NaN anywhere gives +inf.
double rel_error(const float* a, const float* b, std::size_t n);
double rel_error(const std::vector<float>& a, const std::vector<float>& b);
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

// Path of a program built beside the tests: $INCEPT_TEST_BIN_DIR/<name>, else the running test
// program's own folder where <name> is there, else the build's bin/<name>.
std::string test_program(const std::string& name);

// "PROGRAM ARGS..." with PROGRAM's path from test_program, for a shell.
std::string program_command(const std::string& program_and_args);

// A whole file's bytes ("" when it cannot be read).
std::string read_file(const std::filesystem::path& path);

// The first line of `text` that starts with `prefix`, without its newline ("" when none does).
std::string line_starting(const std::string& text, const std::string& prefix);

// Debian's Fashion-MNIST, `per_class` images of each class, written as a class folder under
// `root`/images and ingested with DIGITS' defaults (256x256 colour JPEG, 25 % validation) into
// `root`/ds, which is returned.
std::filesystem::path ingest_fashion_mnist(const std::filesystem::path& root, int per_class);

// Every blob of a caffemodel, concatenated in file order (a trained job's weights).
std::vector<float> caffemodel_weights(const std::filesystem::path& caffemodel);
// The value named `name` among a job's output sums (TrainResult::final_val), NaN when absent.
double metric(const std::vector<std::pair<std::string, double>>& sums, const std::string& name);

// The message of the incept::Error that fn() throws, or "" when it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

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

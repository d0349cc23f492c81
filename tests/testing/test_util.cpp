// Shared test helpers (test_util.h).
#include "testing/test_util.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>

#include "data/idx.h"
#include "data/ingest.h"
#include "engine/caffe_model.h"

namespace incept::testing {

bool gpu_required() {
  const char* v = std::getenv("INCEPT_REQUIRE_GPU");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<double> random_doubles(std::size_t n, std::uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double rel_error(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return rel_error(a.data(), b.data(), std::min(a.size(), b.size()));
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates
  }
  return m;
}

std::string test_program(const std::string& name) {
  // $INCEPT_TEST_BIN_DIR first; then the folder this test program runs from, where the programs
  // were moved together (a GPU machine runs them from a package); then the build's bin folder.
  const char* dir = std::getenv("INCEPT_TEST_BIN_DIR");
  if (dir && *dir) return std::string(dir) + "/" + name;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = self.parent_path() / name;
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  return std::string(INCEPT_TEST_BIN_DIR) + "/" + name;
}

std::string program_command(const std::string& program_and_args) {
  const std::size_t space = program_and_args.find(' ');
  if (space == std::string::npos) return test_program(program_and_args);
  return test_program(program_and_args.substr(0, space)) + program_and_args.substr(space);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string line_starting(const std::string& text, const std::string& prefix) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    if (text.compare(pos, prefix.size(), prefix) == 0) return text.substr(pos, end - pos);
    pos = end + 1;
  }
  return "";
}

TempDir::TempDir(const std::string& prefix) {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path ingest_fashion_mnist(const std::filesystem::path& root, int per_class) {
  data::write_fashion_mnist_folder((root / "images").string(), per_class);
  data::IngestOptions o;
  o.source = (root / "images").string();
  o.output_dir = (root / "ds").string();
  o.progress_interval_s = 100;
  data::run_ingest(o);
  return root / "ds";
}

std::vector<float> caffemodel_weights(const std::filesystem::path& caffemodel) {
  std::vector<float> all;
  for (const auto& l : read_caffemodel(caffemodel.string()))
    for (const auto& b : l.blobs) all.insert(all.end(), b.data.begin(), b.data.end());
  return all;
}

double metric(const std::vector<std::pair<std::string, double>>& sums, const std::string& name) {
  for (const auto& [n, x] : sums)
    if (n == name) return x;
  return NAN;
}

}  // namespace incept::testing

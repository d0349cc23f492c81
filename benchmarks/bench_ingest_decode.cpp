// bench_ingest_decode: the per-image CPU cost of an ingest record (decode -> fit -> encode ->
// Datum, plus the mean's pixels for training images), one thread, no HTTP or LMDB. Loads a
// sample of the bench_ingest tree into memory and times make_record with the thread's CPU
// clock, so other load on a shared machine moves the figure much less than wall time.
#include <fmt/format.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "data/record.h"

namespace fs = std::filesystem;

namespace {

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

}  // namespace

int main(int argc, char** argv) {
  std::string tree = "/tmp/incept_bench_ingest_tree", encoding = "jpg", resize = "squash";
  int images = 300, reps = 7, channels = 3;
  double train_fraction = 0.75;
  CLI::App app{"bench_ingest_decode: CPU ms per ingest record (decode, fit, encode), one thread"};
  app.add_option("--tree", tree, "tree made by bench_ingest_tree")->capture_default_str();
  app.add_option("--images", images, "images loaded from the tree")->capture_default_str();
  app.add_option("--reps", reps, "passes over them (median and best reported)")->capture_default_str();
  app.add_option("--encoding", encoding, "jpg, png or none")->capture_default_str();
  app.add_option("--resize", resize, "squash, crop, fill or half_crop")->capture_default_str();
  app.add_option("--channels", channels, "3 or 1")->capture_default_str();
  app.add_option("--train-fraction", train_fraction, "share of records that also give the mean's pixels")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<fs::path> paths;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(tree) / "imagenet" / "train"))
    if (e.is_regular_file()) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) {
    fmt::print(stderr, "no images under {}/imagenet/train: run bench_ingest_tree first\n", tree);
    return 1;
  }
  std::vector<std::string> files;
  const std::size_t step = std::max<std::size_t>(1, paths.size() / std::size_t(images));
  for (std::size_t i = 0; i < paths.size() && int(files.size()) < images; i += step)
    files.push_back(slurp(paths[i]));
  std::size_t bytes = 0;
  for (const auto& f : files) bytes += f.size();

  incept::data::RecordOptions o;
  o.channels = channels;
  o.encoding = incept::data::parse_encoding(encoding);
  o.resize = incept::data::parse_resize_mode(resize);
  std::string value;
  incept::data::Image pixels;
  std::size_t out_bytes = 0;
  std::uint64_t checksum = 0;
  std::vector<double> ms;
  for (int r = 0; r < reps + 1; ++r) {  // pass 0 warms up
    const double t0 = thread_cpu_seconds();
    out_bytes = 0;
    for (std::size_t i = 0; i < files.size(); ++i) {
      const bool train = double(i % 100) < train_fraction * 100;
      const auto* p = reinterpret_cast<const std::uint8_t*>(files[i].data());
      incept::data::make_record(p, files[i].size(), 0, i, o, &value, train ? &pixels : nullptr);
      out_bytes += value.size();
      if (train) checksum += pixels.pixels[pixels.pixels.size() / 2];
    }
    if (r > 0) ms.push_back(1e3 * (thread_cpu_seconds() - t0) / double(files.size()));
  }
  std::sort(ms.begin(), ms.end());
  fmt::print("{} images ({:.1f} KB avg) -> records of {:.1f} KB avg; checksum {}\n", files.size(),
             bytes / 1e3 / double(files.size()), out_bytes / 1e3 / double(files.size()), checksum);
  fmt::print("CPU per record: median {:.3f} ms, best {:.3f} ms ({} passes) = {:.0f} records per CPU-second\n",
             ms[ms.size() / 2], ms[0], ms.size(), 1e3 / ms[ms.size() / 2]);
  return 0;
}

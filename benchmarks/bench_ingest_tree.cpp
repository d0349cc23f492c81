// bench_ingest_tree --out DIR [--classes 100] [--per-class 60]: writes an ImageNet-shaped
// image folder for bench_ingest: DIR/imagenet/train/nXXXXXXXX/nXXXXXXXX_<i>.JPEG, 500x375
// RGB JPEGs (quality 90, 4:2:0) of about 110 KB like the ImageNet average, made of
// gradients, blobs, texture and noise so they compress like photographs, not like flat art.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "data/image.h"

namespace fs = std::filesystem;
using incept::data::Image;

Image synth(std::uint64_t seed, int w, int h, double noise) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  Image img(w, h, 3);
  double base[3], gx[3], gy[3];
  for (int c = 0; c < 3; ++c)
    base[c] = 40 + 170 * u(rng), gx[c] = (u(rng) - 0.5) * 160, gy[c] = (u(rng) - 0.5) * 160;
  struct Blob {
    double x, y, r, a[3];
  };
  Blob blobs[6];
  for (auto& b : blobs) {
    b.x = u(rng) * w, b.y = u(rng) * h, b.r = 20 + u(rng) * 120;
    for (double& a : b.a) a = (u(rng) - 0.5) * 180;
  }
  const double fx1 = 0.02 + u(rng) * 0.2, fy1 = 0.02 + u(rng) * 0.2, fx2 = 0.3 + u(rng) * 0.6,
               fy2 = 0.3 + u(rng) * 0.6;
  std::uniform_int_distribution<int> nz(-int(noise), int(noise));
  for (int y = 0; y < h; ++y) {
    std::uint8_t* row = img.row(y);
    for (int x = 0; x < w; ++x) {
      const double tex = 18 * std::sin(x * fx1 + y * fy1) + 10 * std::sin(x * fx2 - y * fy2);
      for (int c = 0; c < 3; ++c) {
        double v = base[c] + gx[c] * x / w + gy[c] * y / h + tex * (c == 1 ? 1.0 : 0.7);
        for (const auto& b : blobs) {
          const double d2 = ((x - b.x) * (x - b.x) + (y - b.y) * (y - b.y)) / (b.r * b.r);
          if (d2 < 4) v += b.a[c] * std::exp(-d2);
        }
        v += nz(rng);
        row[3 * x + c] = std::uint8_t(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return img;
}

int main(int argc, char** argv) {
  std::string out;
  int classes = 100, per_class = 60, threads = int(std::thread::hardware_concurrency());
  double noise = 45;
  bool sample = false;
  CLI::App app{"bench_ingest_tree: an ImageNet-shaped JPEG folder for bench_ingest"};
  app.add_option("--out", out, "folder to create (imagenet/train/... inside)")->required();
  app.add_option("--classes", classes, "class folders")->capture_default_str();
  app.add_option("--per-class", per_class, "images per class")->capture_default_str();
  app.add_option("--noise", noise, "per-pixel noise amplitude (sets the JPEG size)")->capture_default_str();
  app.add_option("--threads", threads, "threads")->capture_default_str();
  app.add_flag("--sample", sample, "print the size of a few images and exit");
  CLI11_PARSE(app, argc, argv);
  if (sample) {
    double total = 0;
    for (int i = 0; i < 8; ++i)
      total += double(incept::data::encode_jpeg(synth(i, 500, 375, noise), 90).size());
    fmt::print("mean JPEG size {:.1f} KB at noise {}\n", total / 8 / 1000, noise);
    return 0;
  }
  const fs::path root = fs::path(out) / "imagenet" / "train";
  std::atomic<std::int64_t> next{0}, bytes{0};
  const std::int64_t total = std::int64_t(classes) * per_class;
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t)
    pool.emplace_back([&] {
      for (std::int64_t i; (i = next++) < total;) {
        const int c = int(i / per_class);
        const std::string cls = fmt::format("n{:08d}", 1440764 + c * 1111);
        fs::create_directories(root / cls);
        const std::string jpg =
            incept::data::encode_jpeg(synth(std::uint64_t(i) * 7919 + 1, 500, 375, noise), 90);
        std::ofstream(root / cls / fmt::format("{}_{}.JPEG", cls, i % per_class), std::ios::binary) << jpg;
        bytes += std::int64_t(jpg.size());
      }
    });
  for (auto& t : pool) t.join();
  fmt::print("wrote {} images, {:.1f} MB ({:.1f} KB each) under {}\n", total, bytes / 1e6,
             bytes / 1e3 / double(total), root.string());
  return 0;
}

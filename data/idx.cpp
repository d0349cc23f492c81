// IDX reader and the Fashion-MNIST image-folder writer (idx.h).
#include "data/idx.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/check.h"

namespace fs = std::filesystem;

namespace incept::data {

IdxArray read_idx(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
  if (!f) throw Error(fmt::format("cannot open {}", path));
  std::string bytes;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) bytes.append(buf, std::size_t(n));
  const bool bad = n < 0;
  gzclose(f);
  if (bad) throw Error(fmt::format("{}: corrupt gzip data", path));
  auto u8 = [&](std::size_t i) { return std::uint8_t(bytes[i]); };
  if (bytes.size() < 4 || u8(0) != 0 || u8(1) != 0 || u8(2) != 0x08)
    throw Error(fmt::format("{} is not an unsigned-byte IDX file", path));
  const int ndims = u8(3);
  if (bytes.size() < 4 + 4 * std::size_t(ndims)) throw Error(fmt::format("{}: truncated IDX header", path));
  IdxArray a;
  std::size_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const std::size_t o = 4 + 4 * std::size_t(d);
    a.dims.push_back(int(std::uint32_t(u8(o)) << 24 | u8(o + 1) << 16 | u8(o + 2) << 8 | u8(o + 3)));
    count *= std::size_t(a.dims.back());
  }
  const std::size_t start = 4 + 4 * std::size_t(ndims);
  if (bytes.size() - start != count)
    throw Error(fmt::format("{}: {} data bytes, header says {}", path, bytes.size() - start, count));
  a.values.assign(bytes.begin() + std::ptrdiff_t(start), bytes.end());
  return a;
}

Image idx_image(const IdxArray& a, std::int64_t i) {
  if (a.dims.size() != 3 || i < 0 || i >= a.dims[0])
    throw Error("idx_image: not an {N,H,W} array or bad index");
  Image img(a.dims[2], a.dims[1], 1);
  std::copy_n(a.values.begin() + std::ptrdiff_t(i * std::int64_t(img.size())), img.size(),
              img.pixels.begin());
  return img;
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle_boot"};
  return names;
}

std::string fashion_mnist_dir() {
  const char* env = std::getenv("INCEPT_FASHION_MNIST_DIR");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

namespace {

std::int64_t write_split(const std::string& out_dir, int per_class, const std::string& split,
                         const std::string& data_dir, const std::string& prefix) {
  const IdxArray images = read_idx(fmt::format("{}/{}-images-idx3-ubyte.gz", data_dir, split));
  const IdxArray labels = read_idx(fmt::format("{}/{}-labels-idx1-ubyte.gz", data_dir, split));
  if (images.dims.size() != 3 || labels.dims.size() != 1 || labels.dims[0] != images.dims[0])
    throw Error(fmt::format("{}: images and labels do not match", data_dir));
  const auto& names = fashion_mnist_class_names();
  std::vector<int> written(names.size(), 0);
  for (const auto& n : names) fs::create_directories(fs::path(out_dir) / n);
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < images.dims[0]; ++i) {
    const int label = labels.values[std::size_t(i)];
    if (label >= int(names.size()) || written[label] >= per_class) continue;
    const fs::path p = fs::path(out_dir) / names[label] / fmt::format("{}{}.png", prefix, i);
    std::ofstream(p, std::ios::binary) << encode_png(idx_image(images, i));
    ++written[label];
    ++total;
  }
  return total;
}

}  // namespace

std::int64_t write_fashion_mnist_folder(const std::string& out_dir, int per_class, const std::string& split,
                                        const std::string& data_dir) {
  if (split == "all")  // all 70,000: train's 60,000 then t10k's 10,000 (named t10k_<index>.png)
    return write_split(out_dir, per_class, "train", data_dir, "") +
           write_split(out_dir, per_class, "t10k", data_dir, "t10k_");
  return write_split(out_dir, per_class, split, data_dir, "");
}

}  // namespace incept::data

// The IDX format of (Fashion-)MNIST, gzipped or not (read through zlib): unsigned-byte
// tensors with a big-endian header. Debian's dataset-fashion-mnist installs them under
// /usr/share/datasets/fashion-mnist; they give the tests real images with known labels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace incept::data {

struct IdxArray {
  std::vector<int> dims;             // e.g. {60000, 28, 28} or {60000}
  std::vector<std::uint8_t> values;  // row-major
};

// Reads an idx*-ubyte file (.gz or plain). Throws incept::Error.
IdxArray read_idx(const std::string& path);

// Image i of an {N, H, W} array (1 channel).
Image idx_image(const IdxArray& a, std::int64_t i);

// Fashion-MNIST class folder names (label order), '_' for spaces: T-shirt_top ... Ankle_boot.
const std::vector<std::string>& fashion_mnist_class_names();
// The data folder: $INCEPT_FASHION_MNIST_DIR, else Debian's /usr/share/datasets/fashion-mnist.
std::string fashion_mnist_dir();

// Writes OUT/<class_name>/<index>.png for the first `per_class` images of each class of the
// Fashion-MNIST `split`: "train", "t10k", or "all" (both, per_class each; in "all" the t10k files are
// named t10k_<index>.png). Returns the number of files written.
std::int64_t write_fashion_mnist_folder(const std::string& out_dir, int per_class,
                                        const std::string& split = "train",
                                        const std::string& data_dir = fashion_mnist_dir());

}  // namespace incept::data

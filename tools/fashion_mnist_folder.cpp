// fashion_mnist_folder OUT [--per-class N] [--split train|t10k]: writes Fashion-MNIST as an
// image folder OUT/<class_name>/<index>.png (class names with '_', e.g. Ankle_boot), the
// layout imagenet_ingest reads. Real images for tests and demos without a network.
#include <CLI/CLI.hpp>

#include "data/idx.h"
#include "engine/check.h"
#include "engine/log.h"

int main(int argc, char** argv) {
  std::string out, split = "train", data_dir = incept::data::fashion_mnist_dir();
  int per_class = 100;
  CLI::App app{"fashion_mnist_folder: Fashion-MNIST (Debian dataset-fashion-mnist) as an image folder"};
  app.add_option("OUT", out, "folder to write")->required();
  app.add_option("--per-class", per_class, "images per class")->capture_default_str();
  app.add_option("--split", split, "train, t10k or all (both: 70,000 images)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "folder of the *-idx*-ubyte.gz files")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const auto n = incept::data::write_fashion_mnist_folder(out, per_class, split, data_dir);
    incept::log_info("wrote {} images to {}", n, out);
    return 0;
  } catch (const incept::Error& e) {
    incept::log_error("fashion_mnist_folder: {} (install Debian's dataset-fashion-mnist)", e.what());
    return 1;
  }
}

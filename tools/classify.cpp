// classify --model MODEL.tar.gz|JOB_DIR [--snapshot N] IMAGE|URL... [--top 5] [--gpus 0|none]
//          [--batch N]
// DIGITS' "Classify Many" from the command line: the top-k classes with their probabilities for
// each image (files or http:// URLs), with DIGITS' preprocessing (data/preprocess.h), the images
// run as batches on the CPU or a GPU. The work is in engine/classifier.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "data/image.h"
#include "data/image_input.h"
#include "engine/check.h"
#include "engine/classifier.h"
#include "engine/device.h"
#include "engine/log.h"
#include "models/models.h"

int main(int argc, char** argv) {
  std::string model, gpus = "none";
  std::vector<std::string> images;
  std::int64_t snapshot = -1;
  int top = 5, batch = 0;
  CLI::App app{"classify: top-k classes of images with a trained model (archive or job folder)"};
  app.add_option("--model", model, "model archive (export_caffe) or job folder (train_googlenet --output)")
      ->required();
  app.add_option("--snapshot", snapshot, "job folder: iteration of the snapshot (default: the latest)");
  app.add_option("IMAGES", images, "image files or http(s):// URLs")->required();
  app.add_option("--top", top, "classes to print per image")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--gpus", gpus, "GPU to run on (e.g. 0), or none for the CPU")->capture_default_str();
  app.add_option("--batch", batch, "images per forward pass (default: all, at most 32)")
      ->check(CLI::Range(0, 4096));
  CLI11_PARSE(app, argc, argv);
  try {
    namespace fs = std::filesystem;
    // The images first: a wrong path fails before the model is loaded.
    const std::vector<std::string> bytes = incept::data::read_image_sources(images);
    std::vector<incept::data::Image> decoded;
    for (std::size_t i = 0; i < images.size(); ++i) {
      try {
        decoded.push_back(incept::data::decode_image(bytes[i]));
      } catch (const incept::Error& e) {
        throw incept::Error(images[i] + ": " + e.what());
      }
    }
    incept::ModelFiles files;
    if (fs::is_directory(model)) {
      const incept::JobInfo job = incept::read_job(model);
      incept::ExportOptions o;
      if (snapshot >= 0) o.snapshot_iter = snapshot;
      files = incept::export_model(job, incept::models::by_name(job.network), o);
    } else {
      if (snapshot >= 0)
        throw incept::Error("--snapshot selects a snapshot of a job folder, not of an archive");
      files = incept::read_model_archive(model);
    }
    const std::vector<int> devices = incept::parse_gpu_list(gpus);
    if (devices.size() > 1) incept::log_warn("classify runs on one GPU: using GPU {}", devices[0]);
    if (batch == 0) batch = std::min<int>(int(images.size()), 32);
    incept::Classifier classifier(files, batch, devices.empty() ? -1 : devices[0]);

    const auto probs = classifier.classify(decoded);
    std::printf("%s (%s) on %s\n", files.caffemodel_name.c_str(), model.c_str(),
                devices.empty() ? "the CPU" : ("GPU " + std::to_string(devices[0])).c_str());
    for (std::size_t i = 0; i < images.size(); ++i) {
      std::printf("%s\n", images[i].c_str());
      int rank = 0;
      for (const incept::Prediction& p : incept::top_k(probs[i], top, classifier.labels()))
        std::printf("  %d. %7.3f%%  %s\n", ++rank, 100.0 * p.probability, p.label.c_str());
    }
    return 0;
  } catch (const incept::Error& e) {
    incept::log_error("classify: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    incept::log_error("classify: unexpected error: {}", e.what());
    return 2;
  }
}

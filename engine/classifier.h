// Running a trained classifier on images, as DIGITS' "Classify One/Many" does: the model's
// deploy.prototxt read back into a net (engine/caffe_model.h), its caffemodel imported by layer
// name, DIGITS' preprocessing (data/preprocess.h: the dataset's resize mode and record size,
// centre crop, BGR, mean, scale), forward on the CPU (CpuNet) or one GPU (GpuNet, forward only),
// and the softmax probabilities per image. Images run `batch` at a time in one forward.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/preprocess.h"
#include "engine/model_archive.h"

namespace incept {

// DIGITS' preprocessing for a model, from its files: the input size from deploy.prototxt; the
// record size and resize mode from info.json ("image dimensions", "image resize mode"); the mean
// (mean_file -> the mean image, mean_value -> per-channel) and scale from train_val.prototxt's
// validation data layer. Throws Error when they do not fit together.
data::InputTransform input_transform(const ModelFiles& files);

struct Prediction {
  int index = 0;
  std::string label;
  float probability = 0.f;
};
// The k most probable classes, best first (ties: lower index first).
std::vector<Prediction> top_k(std::span<const float> probabilities, int k,
                              const std::vector<std::string>& labels);

class Classifier {
 public:
  // gpu < 0: the CPU; else that CUDA device (throws Error naming the reason when there is none).
  Classifier(const ModelFiles& files, int batch, int gpu = -1);
  ~Classifier();
  Classifier(const Classifier&) = delete;
  Classifier& operator=(const Classifier&) = delete;

  const std::vector<std::string>& labels() const { return labels_; }
  int num_classes() const { return classes_; }
  int batch() const { return batch_; }
  const data::InputTransform& transform() const { return transform_; }
  const std::string& output_blob() const { return output_; }

  // Softmax probabilities [image][class] of decoded images (preprocessed here).
  std::vector<std::vector<float>> classify(const std::vector<data::Image>& images);
  // The same for n preprocessed inputs (n x C x H x W floats, NCHW).
  std::vector<std::vector<float>> classify_inputs(std::span<const float> x, int n);

  struct Backend;  // CpuNet or GpuNet (classifier.cpp)

 private:
  std::unique_ptr<Backend> backend_;
  data::InputTransform transform_;
  std::vector<std::string> labels_;
  std::string output_;  // the deploy net's Softmax top
  int output_blob_ = -1;
  int classes_ = 0, batch_ = 0;
};

}  // namespace incept

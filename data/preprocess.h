// DIGITS' image preprocessing for a trained classifier: an image of any size is fitted to the
// dataset's record size with the dataset's resize mode (squash, crop, fill, half_crop, as
// ingest made the records), then transformed the way Caffe's DataTransformer transforms a
// validation record: the centre crop of the network's input size, BGR channel order, minus the
// mean image's same crop window (or the per-channel mean), times transform_param.scale.
//
// DIGITS' web "Classify One" differs in one step: after fitting to the record size it resizes
// the whole 256x256 record to 224x224 (no crop) and subtracts the mean image resized likewise
// (digits-facts §5.1 item 5). incept uses the centre crop instead: it is what the network saw
// during validation, so classify's probabilities are those of the job's validation pass and of
// Caffe's own TEST-phase data layer; the resize variant shows the network objects at a scale
// (x 0.875) it was never trained on.
#pragma once

#include <vector>

#include "data/datum.h"
#include "data/image.h"
#include "data/resize.h"

namespace incept::data {

enum class MeanMode { kNone, kImage, kPixel };

struct InputTransform {
  int channels = 3;                         // 3: BGR planes, 1: grey
  int record_width = 0, record_height = 0;  // the dataset's image size
  ResizeMode resize = ResizeMode::kSquash;  // how ingest fitted images to it
  int input_width = 0, input_height = 0;    // the network input (centre crop of the record)
  MeanMode mean = MeanMode::kNone;
  MeanBlob mean_image;            // kImage: CHW BGR floats of the record size
  std::vector<float> mean_pixel;  // kPixel: one value per channel (BGR)
  float scale = 1.f;              // transform_param.scale, applied after the mean
};

// Throws Error when the transform cannot be applied (crop larger than the record, a mean image
// of another size or channel count, a pixel mean of the wrong length).
void validate_transform(const InputTransform& t);

// One image (HWC uint8, RGB or grey, any size) -> channels x input_height x input_width floats
// (CHW, BGR for colour) at `out`. Fill modes pad with seeded noise (noise_seed), as ingest does.
void preprocess_image(const Image& img, const InputTransform& t, float* out, std::uint64_t noise_seed = 0);

}  // namespace incept::data

// One ingest record: image file bytes -> decode -> fit to W x H -> serialized caffe.Datum,
// plus the fitted pixels the mean image sums. This is the per-image work of every ingest
// worker, kept apart from the pipeline so tests and benchmarks can reach it directly.
#pragma once

#include <cstdint>
#include <string>

#include "data/datum.h"
#include "data/image.h"
#include "data/resize.h"

namespace incept::data {

struct RecordOptions {
  int width = 256;
  int height = 256;
  int channels = 3;  // 3: RGB records (BGR once decoded by Caffe), 1: gray
  ResizeMode resize = ResizeMode::kSquash;
  Encoding encoding = Encoding::kJpeg;
  int jpeg_quality = 90;
  std::int64_t max_pixels = 64'000'000;
};

// Decodes `data` (JPEG, PNG, BMP or PPM), fits it as DIGITS does and writes the serialized
// Datum to *value (its capacity is reused). When mean_pixels is non-null it receives the
// fitted image, HWC RGB (or gray), width x height: the pixels the stored record encodes,
// before compression, which is what DIGITS' mean sums. `noise_seed` drives fill padding.
// Throws ImageError (or incept::Error) for unusable input.
void make_record(const std::uint8_t* data, std::size_t size, int label, std::uint64_t noise_seed,
                 const RecordOptions& opt, std::string* value, Image* mean_pixels);

}  // namespace incept::data

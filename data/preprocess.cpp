// DIGITS' classification preprocessing (preprocess.h).
#include "data/preprocess.h"

#include <fmt/format.h>

#include "engine/check.h"

namespace incept::data {

void validate_transform(const InputTransform& t) {
  if (t.channels != 1 && t.channels != 3)
    throw Error(fmt::format("input with {} channels (1 or 3 expected)", t.channels));
  if (t.input_width <= 0 || t.input_height <= 0 || t.input_width > t.record_width ||
      t.input_height > t.record_height)
    throw Error(fmt::format("network input {}x{} does not fit in the {}x{} records", t.input_width,
                            t.input_height, t.record_width, t.record_height));
  if (t.mean == MeanMode::kImage) {
    const MeanBlob& m = t.mean_image;
    if (m.channels != t.channels || m.width != t.record_width || m.height != t.record_height ||
        m.chw.size() != std::size_t(m.channels) * m.height * m.width)
      throw Error(fmt::format("the mean image is {}x{}x{}, the records {}x{}x{}", m.width, m.height,
                              m.channels, t.record_width, t.record_height, t.channels));
  }
  if (t.mean == MeanMode::kPixel && t.mean_pixel.size() != std::size_t(t.channels))
    throw Error(fmt::format("{} mean values for {} channels", t.mean_pixel.size(), t.channels));
}

void preprocess_image(const Image& img, const InputTransform& t, float* out, std::uint64_t noise_seed) {
  const Image rec =
      fit_image(to_channels(img, t.channels), t.record_width, t.record_height, t.resize, noise_seed);
  // Caffe's TEST-phase crop offset.
  const int y0 = (t.record_height - t.input_height) / 2, x0 = (t.record_width - t.input_width) / 2;
  for (int c = 0; c < t.channels; ++c) {
    const int src_c = t.channels == 3 ? 2 - c : 0;  // BGR planes from RGB pixels
    for (int y = 0; y < t.input_height; ++y) {
      const std::uint8_t* row = rec.row(y0 + y);
      float* o = out + (std::size_t(c) * t.input_height + y) * t.input_width;
      const float* mean_row =
          t.mean == MeanMode::kImage
              ? t.mean_image.chw.data() + (std::size_t(c) * t.record_height + y0 + y) * t.record_width + x0
              : nullptr;
      const float pixel_mean = t.mean == MeanMode::kPixel ? t.mean_pixel[c] : 0.f;
      for (int x = 0; x < t.input_width; ++x) {
        const float v = float(row[std::size_t(x0 + x) * t.channels + src_c]);
        o[x] = (v - (mean_row ? mean_row[x] : pixel_mean)) * t.scale;
      }
    }
  }
}

}  // namespace incept::data

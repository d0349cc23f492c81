// CPU reference of Caffe's DataTransformer for one uint8 image: crop, optional mirror, mean
// subtraction and scale, producing one NCHW float image of the batch.
//
// Caffe's order (data_transformer.cpp): for output (c, h, w) of the crop at (y0, x0),
//   src pixel  = image(c, y0 + h, x0 + w)
//   mean       = mean_image(c, y0 + h, x0 + w)   (the mean is image-sized, e.g. 256x256, and is
//                                                 indexed at the SOURCE pixel, not the mirrored one)
//                or mean_values[c], or 0
//   out(c, h, mirror ? crop_w - 1 - w : w) = (src - mean) * scale
// The image is BGR (as Caffe/DIGITS store it), HWC interleaved or CHW planar.
#pragma once

#include <cstdint>

namespace incept::ref {

enum class PixelLayout { kHwc = 0, kChw = 1 };

struct TransformParams {
  int crop_h = 0, crop_w = 0;  // 0: no crop (the whole image)
  int y0 = 0, x0 = 0;          // crop offset (train: random, val: centre)
  bool mirror = false;
  float scale = 1.f;
  const float* mean_image = nullptr;   // CHW float, same C, H, W as the image; or null
  const float* mean_values = nullptr;  // C floats (per-channel mean); used if no mean_image
};

// img: uint8 of c*h*w in `layout`. out: dense CHW of c*crop_h*crop_w elements of T.
template <typename T>
void transform_image(const std::uint8_t* img, PixelLayout layout, int c, int h, int w,
                     const TransformParams& p, T* out);

// Centre crop offset as Caffe's TEST phase computes it: (h - crop_h) / 2.
constexpr int center_offset(int size, int crop) {
  return (size - crop) / 2;
}

}  // namespace incept::ref

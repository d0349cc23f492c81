// CPU reference input transform (transform_ref.h).
#include "kernels/transform_ref.h"

#include <stdexcept>
#include <string>

namespace incept::ref {

template <typename T>
void transform_image(const std::uint8_t* img, PixelLayout layout, int c, int h, int w,
                     const TransformParams& p, T* out) {
  const int ch = p.crop_h ? p.crop_h : h;
  const int cw = p.crop_w ? p.crop_w : w;
  if (p.y0 < 0 || p.x0 < 0 || p.y0 + ch > h || p.x0 + cw > w)
    throw std::invalid_argument("crop " + std::to_string(ch) + "x" + std::to_string(cw) + " at (" +
                                std::to_string(p.y0) + "," + std::to_string(p.x0) +
                                ") does not fit an image of " + std::to_string(h) + "x" + std::to_string(w));
  for (int ci = 0; ci < c; ++ci)
    for (int y = 0; y < ch; ++y)
      for (int x = 0; x < cw; ++x) {
        const int sy = p.y0 + y, sx = p.x0 + x;
        const std::int64_t src_chw = (std::int64_t(ci) * h + sy) * w + sx;
        const std::int64_t src = layout == PixelLayout::kChw ? src_chw : (std::int64_t(sy) * w + sx) * c + ci;
        float mean = 0.f;
        if (p.mean_image)
          mean = p.mean_image[src_chw];
        else if (p.mean_values)
          mean = p.mean_values[ci];
        const int ox = p.mirror ? cw - 1 - x : x;
        out[(std::int64_t(ci) * ch + y) * cw + ox] = T((float(img[src]) - mean) * p.scale);
      }
}

template void transform_image<float>(const std::uint8_t*, PixelLayout, int, int, int, const TransformParams&,
                                     float*);
template void transform_image<double>(const std::uint8_t*, PixelLayout, int, int, int, const TransformParams&,
                                      double*);

}  // namespace incept::ref

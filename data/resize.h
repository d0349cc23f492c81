// Resizing for datasets: a separable bilinear (triangle) filter whose support widens when
// shrinking, so a 4x reduction averages pixels instead of aliasing (what PIL's BILINEAR,
// and so DIGITS, does), and DIGITS' four ways of fitting an image to W x H:
// squash, crop, fill (pad with noise) and half_crop (half crop, half fill).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "data/image.h"

namespace incept::data {

enum class ResizeMode { kSquash, kCrop, kFill, kHalfCrop };

// "squash", "crop", "fill", "half_crop"; throws incept::Error for anything else.
ResizeMode parse_resize_mode(std::string_view name);
const char* resize_mode_name(ResizeMode mode);

struct Extent {
  int width = 0;
  int height = 0;
};

// The size `mode` resizes a src_w x src_h image to before cropping or padding to w x h.
Extent resize_extent(int src_w, int src_h, int w, int h, ResizeMode mode);

// Bilinear resize of any HWC uint8 image (pixel centres aligned, edges clamped).
Image resize_bilinear(const Image& src, int width, int height);
// Same into *dst (not src), reusing its allocation.
void resize_bilinear(const Image& src, int width, int height, Image* dst);

// Decodes a JPEG and resizes it to width x height (RGB) through its YCbCr planes: the same
// picture as decode_image + resize_bilinear within about one level, and faster (no
// full-size colour conversion or chroma upsampling; chroma resized from its own size).
// Where the DCT scaled decode applies (or for CMYK) it is decode_image + resize_bilinear.
Image decode_jpeg_resized(const std::uint8_t* data, std::size_t size, int width, int height,
                          const DecodeOptions& opt);

// Fits src to exactly width x height as DIGITS' resize_image does. `noise_seed` drives the
// uniform 0..254 padding of fill / half_crop (seeded, so reruns give identical records).
Image fit_image(const Image& src, int width, int height, ResizeMode mode, std::uint64_t noise_seed);

}  // namespace incept::data

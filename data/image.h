// 8-bit images (HWC, RGB or gray) and their codecs: JPEG through libjpeg-turbo (with a
// scaled DCT decode when the caller needs far fewer pixels), PNG through libpng, and small
// BMP/PPM readers. Every decoder reads the header first and refuses images above a pixel
// limit before allocating, so a hostile or broken file can't exhaust memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/error.h"

namespace incept::data {

// A decoded image: HWC uint8, channels 3 (RGB order) or 1 (gray).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;

  Image() = default;
  Image(int w, int h, int c) : width(w), height(h), channels(c), pixels(std::size_t(w) * h * c) {}
  std::uint8_t* row(int y) { return pixels.data() + std::size_t(y) * width * channels; }
  const std::uint8_t* row(int y) const { return pixels.data() + std::size_t(y) * width * channels; }
  std::size_t size() const { return pixels.size(); }
  // Re-dimensions in place, keeping the allocation when it is large enough (scratch images
  // reused from one file to the next). Pixel values are left unspecified.
  void reset(int w, int h, int c) {
    width = w, height = h, channels = c;
    pixels.resize(std::size_t(w) * h * c);
  }
};

// A file that is not a usable image (corrupt, truncated, unsupported, too large). The
// message says what is wrong; callers add the file name or URL.
class ImageError : public Error {
 public:
  using Error::Error;
};

enum class ImageFormat { kUnknown, kJpeg, kPng, kBmp, kPpm };
const char* image_format_name(ImageFormat f);

struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;
  int height = 0;
  bool ycc_420 = false;  // a YCbCr JPEG with 4:2:0 chroma (most photographs)
};

// Sniffs the magic bytes and reads only the header. Throws ImageError for an empty,
// non-image or broken header.
ImageInfo read_image_info(const std::uint8_t* data, std::size_t size);

struct DecodeOptions {
  int channels = 3;                      // 3: RGB (gray is replicated), 1: gray (luma)
  std::int64_t max_pixels = 64'000'000;  // refused above this, before any allocation
  // When both are > 0, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (in the DCT) as
  // long as the result stays at least this large.
  int min_width = 0;
  int min_height = 0;
};

// Decodes a JPEG, PNG, BMP or PPM file held in memory. Throws ImageError.
Image decode_image(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt = {});
inline Image decode_image(const std::string& bytes, const DecodeOptions& opt = {}) {
  return decode_image(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), opt);
}

// The DCT scale (1, 2, 4 or 8 for 1/1 ... 1/8) a JPEG of w x h is decoded at under opt.
int jpeg_scale_denominator(int w, int h, const DecodeOptions& opt);

// A JPEG decoded to its Y, Cb, Cr planes (each a 1-channel Image at its own resolution,
// chroma usually half size), without colour conversion or chroma upsampling. Resizing the
// planes and converting afterwards gives the same picture as converting first (both steps
// are linear) at a fraction of the cost. Gray JPEGs give only y. Same DCT scaling rule as
// decode_image. Throws ImageError (e.g. for CMYK files: use decode_image).
struct YuvPlanes {
  Image y, cb, cr;
  int width = 0, height = 0;  // of the (scaled) image
};
// Decodes into *out, reusing its buffers.
void decode_jpeg_planes(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt, YuvPlanes* out);
YuvPlanes decode_jpeg_planes(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt = {});
// JFIF YCbCr -> RGB of three same-size planes.
Image ycbcr_to_rgb(const Image& y, const Image& cb, const Image& cr);

// 4:2:0 planes (y: W x H, both even; cb, cr: W/2 x H/2), as a JPEG stores them. Encoding from them skips the
// RGB -> YCbCr conversion and the chroma downsampling; the file is the same kind encode_jpeg writes
// (baseline, 4:2:0).
void encode_jpeg_420(const Image& y, const Image& cb, const Image& cr, int quality, std::string* out);
// 4:2:0 planes -> HWC RGB, reusing *rgb: bit-exact with what libjpeg's default decode (fancy
// chroma upsampling, then its colour conversion) gives for a JPEG holding these planes.
void ycbcr420_to_rgb(const Image& y, const Image& cb, const Image& cr, Image* rgb);

// Baseline JPEG, 4:2:0 chroma for color (as PIL writes at quality 90), from RGB or gray.
std::string encode_jpeg(const Image& img, int quality = 90);
// PNG (8-bit RGB or gray); compression_level 0..9 (zlib), 6 = libpng's default.
std::string encode_png(const Image& img, int compression_level = 3);

// Color conversions: gray -> RGB by replication; RGB -> gray with 0.299/0.587/0.114.
Image to_channels(Image img, int channels);

}  // namespace incept::data

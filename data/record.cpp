// Image file -> Datum record (record.h).
//
// Photographs (YCbCr JPEGs with 4:2:0 chroma) going to JPEG records take a short path that
// never leaves YCbCr: Y is resized to W x H and each chroma plane straight to its 4:2:0 size,
// and the record is encoded from those planes. The general path would upsample chroma,
// convert to RGB, and have the encoder convert back and downsample again. Only training
// records convert their planes to RGB, for the mean.
#include "data/record.h"

namespace incept::data {
namespace {

// Per-thread buffers, reused from one file to the next.
struct Scratch {
  YuvPlanes src;
  Image y, cb, cr;
  std::string jpeg;
};
thread_local Scratch t_scratch;

void make_record_420(const std::uint8_t* data, std::size_t size, int label, const RecordOptions& opt,
                     std::string* value, Image* mean_pixels) {
  Scratch& s = t_scratch;
  decode_jpeg_planes(data, size, DecodeOptions{3, opt.max_pixels, opt.width, opt.height}, &s.src);
  resize_bilinear(s.src.y, opt.width, opt.height, &s.y);
  resize_bilinear(s.src.cb, opt.width / 2, opt.height / 2, &s.cb);  // 4:2:0 chroma of W x H
  resize_bilinear(s.src.cr, opt.width / 2, opt.height / 2, &s.cr);
  encode_jpeg_420(s.y, s.cb, s.cr, opt.jpeg_quality, &s.jpeg);
  make_encoded_datum(s.jpeg, 3, opt.width, opt.height, label, value);
  if (mean_pixels) ycbcr420_to_rgb(s.y, s.cb, s.cr, mean_pixels);
}

}  // namespace

void make_record(const std::uint8_t* data, std::size_t size, int label, std::uint64_t noise_seed,
                 const RecordOptions& opt, std::string* value, Image* mean_pixels) {
  const ImageInfo info = read_image_info(data, size);
  const Extent e = info.width > 0 && info.height > 0
                       ? resize_extent(info.width, info.height, opt.width, opt.height, opt.resize)
                       : Extent{opt.width, opt.height};
  const bool fits_whole = e.width == opt.width && e.height == opt.height;  // no crop or padding
  const bool even = opt.width % 2 == 0 && opt.height % 2 == 0;             // whole chroma samples
  if (info.ycc_420 && opt.channels == 3 && opt.encoding == Encoding::kJpeg && fits_whole && even)
    return make_record_420(data, size, label, opt, value, mean_pixels);
  DecodeOptions d{opt.channels, opt.max_pixels, e.width, e.height};
  Image img;
  if (info.format == ImageFormat::kJpeg && opt.channels == 3)
    img = decode_jpeg_resized(data, size, e.width, e.height, d);  // resized in YCbCr: faster
  else
    img = decode_image(data, size, d);
  Image fitted = fit_image(img, opt.width, opt.height, opt.resize, noise_seed);
  *value = make_datum(fitted, label, opt.encoding, opt.jpeg_quality);
  if (mean_pixels) *mean_pixels = std::move(fitted);
}

}  // namespace incept::data

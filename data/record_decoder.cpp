// In-place Datum parsing and decoding into a batch slot (record_decoder.h).
#include "data/record_decoder.h"

#include <fmt/format.h>
#include <png.h>
#include <turbojpeg.h>

#include <cstring>

#include "data/image.h"

namespace incept::data {
namespace {

bool read_varint(const std::uint8_t*& p, const std::uint8_t* end, std::uint64_t* v) {
  std::uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p == end) return false;
    const std::uint8_t b = *p++;
    r |= std::uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

bool is_jpeg(const DatumFields& d) {
  return d.data_size >= 3 && d.data[0] == 0xFF && d.data[1] == 0xD8 && d.data[2] == 0xFF;
}
bool is_png(const DatumFields& d) {
  return d.data_size >= 8 && std::memcmp(d.data, "\x89PNG\r\n\x1a\n", 8) == 0;
}

DatumFields parse_or_throw(const std::uint8_t* value, std::size_t size) {
  DatumFields d;
  std::string error;
  if (!parse_datum_fields(value, size, &d, &error)) throw ImageError(error);
  if (d.float_data > 0 && d.data_size == 0)
    throw ImageError(
        fmt::format("Datum holds {} float_data values; the loader reads uint8 pixels", d.float_data));
  return d;
}

[[noreturn]] void wrong_size(int h, int w, int c, const RecordShape& s) {
  throw ImageError(fmt::format("image is {}x{}x{} (HxWxC), the dataset's records are {}x{}x{}", h, w, c,
                               s.height, s.width, s.channels));
}

}  // namespace

bool parse_datum_fields(const std::uint8_t* p, std::size_t n, DatumFields* out, std::string* error) {
  *out = DatumFields{};
  const std::uint8_t* end = p + n;
  if (n == 0) {
    *error = "empty record (0 bytes)";
    return false;
  }
  while (p < end) {
    std::uint64_t tag = 0, v = 0;
    if (!read_varint(p, end, &tag) || (tag >> 3) == 0) {
      *error = "record is not a caffe.Datum (bad field tag)";
      return false;
    }
    const std::uint64_t field = tag >> 3;
    switch (tag & 7) {
      case 0:  // varint
        if (!read_varint(p, end, &v)) {
          *error = "record is not a caffe.Datum (truncated varint)";
          return false;
        }
        if (field == 1) out->channels = int(std::int32_t(v));
        if (field == 2) out->height = int(std::int32_t(v));
        if (field == 3) out->width = int(std::int32_t(v));
        if (field == 5) out->label = std::int32_t(v);
        if (field == 7) out->encoded = v != 0;
        break;
      case 1:  // fixed64
        if (end - p < 8) {
          *error = "record is not a caffe.Datum (truncated fixed64)";
          return false;
        }
        p += 8;
        break;
      case 2:  // length-delimited
        if (!read_varint(p, end, &v) || v > std::uint64_t(end - p)) {
          *error = "record is not a caffe.Datum (field runs past the end)";
          return false;
        }
        if (field == 4) out->data = p, out->data_size = std::size_t(v);
        if (field == 6) out->float_data += std::size_t(v / 4);  // packed floats
        p += v;
        break;
      case 5:  // fixed32
        if (end - p < 4) {
          *error = "record is not a caffe.Datum (truncated fixed32)";
          return false;
        }
        if (field == 6) ++out->float_data;
        p += 4;
        break;
      default:
        *error = fmt::format("record is not a caffe.Datum (wire type {})", int(tag & 7));
        return false;
    }
  }
  return true;
}

RecordDecoder::RecordDecoder(bool accurate_jpeg) : accurate_jpeg_(accurate_jpeg) {}

RecordDecoder::~RecordDecoder() {
  if (tj_) tjDestroy(static_cast<tjhandle>(tj_));
}

void RecordDecoder::reset_jpeg() {
  // After a failed decode a handle may keep a broken state: the next record starts afresh.
  if (tj_) tjDestroy(static_cast<tjhandle>(tj_));
  tj_ = nullptr;
}

RecordShape RecordDecoder::probe(const std::uint8_t* value, std::size_t size) {
  const DatumFields d = parse_or_throw(value, size);
  RecordShape s;
  if (!d.encoded) {
    s = {d.height, d.width, d.channels};
  } else if (is_jpeg(d)) {
    if (!tj_) tj_ = tjInitDecompress();
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (!tj_ ||
        tjDecompressHeader3(static_cast<tjhandle>(tj_), d.data, static_cast<unsigned long>(d.data_size), &w,
                            &h, &subsamp, &colorspace) != 0) {
      reset_jpeg();
      throw ImageError("corrupt JPEG header");
    }
    s = {h, w, d.channels > 0 ? d.channels : colorspace == TJCS_GRAY ? 1 : 3};
  } else if (is_png(d)) {
    png_image png;
    std::memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&png, d.data, d.data_size))
      throw ImageError(fmt::format("corrupt PNG: {}", png.message));
    s = {int(png.height), int(png.width),
         d.channels > 0                       ? d.channels
         : png.format & PNG_FORMAT_FLAG_COLOR ? 3
                                              : 1};
    png_image_free(&png);
  } else {
    throw ImageError("encoded record is neither JPEG nor PNG");
  }
  if (s.height <= 0 || s.width <= 0 || (s.channels != 1 && s.channels != 3))
    throw ImageError(fmt::format("unusable record shape {}x{}x{} (HxWxC; 1 or 3 channels)", s.height, s.width,
                                 s.channels));
  return s;
}

std::int32_t RecordDecoder::decode(const std::uint8_t* value, std::size_t size, const RecordShape& shape,
                                   std::uint8_t* dst) {
  if (shape.channels != 1 && shape.channels != 3)
    throw ImageError(fmt::format("records of {} channels: 1 or 3 supported", shape.channels));
  const DatumFields d = parse_or_throw(value, size);
  if (d.encoded) {
    if (is_jpeg(d))
      decode_jpeg(d, shape, dst);
    else if (is_png(d))
      decode_png(d, shape, dst);
    else
      throw ImageError("encoded record is neither JPEG nor PNG");
    return d.label;
  }
  // Raw: CHW BGR bytes -> HWC.
  if (d.channels != shape.channels || d.height != shape.height || d.width != shape.width)
    wrong_size(d.height, d.width, d.channels, shape);
  const std::size_t plane = std::size_t(shape.height) * shape.width;
  if (d.data_size != plane * shape.channels)
    throw ImageError(
        fmt::format("raw Datum {}x{}x{} holds {} bytes", d.channels, d.height, d.width, d.data_size));
  if (shape.channels == 1) {
    std::memcpy(dst, d.data, plane);
  } else {
    const std::uint8_t *b = d.data, *g = d.data + plane, *r = d.data + 2 * plane;
    for (std::size_t i = 0; i < plane; ++i) dst[3 * i] = b[i], dst[3 * i + 1] = g[i], dst[3 * i + 2] = r[i];
  }
  return d.label;
}

void RecordDecoder::decode_jpeg(const DatumFields& d, const RecordShape& shape, std::uint8_t* dst) {
  if (!tj_) tj_ = tjInitDecompress();
  if (!tj_) throw ImageError("libjpeg-turbo: cannot create a decompressor");
  const auto tj = static_cast<tjhandle>(tj_);
  const auto n = static_cast<unsigned long>(d.data_size);
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, d.data, n, &w, &h, &subsamp, &colorspace) != 0) {
    const std::string msg = tjGetErrorStr2(tj);
    reset_jpeg();
    throw ImageError(fmt::format("corrupt JPEG header: {}", msg));
  }
  if (h != shape.height || w != shape.width)
    wrong_size(h, w, d.channels > 0 ? d.channels : colorspace == TJCS_GRAY ? 1 : 3, shape);
  const int flags = accurate_jpeg_ ? 0 : TJFLAG_FASTDCT | TJFLAG_FASTUPSAMPLE;
  const int format = shape.channels == 1 ? TJPF_GRAY : TJPF_BGR;
  if (tjDecompress2(tj, d.data, n, dst, w, w * shape.channels, h, format, flags) != 0) {
    const std::string msg = tjGetErrorStr2(tj);
    const bool warning = tjGetErrorCode(tj) == TJERR_WARNING;
    reset_jpeg();
    // Warnings (extraneous bytes, odd markers) still give the whole image, as OpenCV accepts
    // them; a premature end means rows are missing.
    if (!warning || msg.find("Premature end") != std::string::npos)
      throw ImageError(fmt::format("corrupt or truncated JPEG: {}", msg));
  }
}

void RecordDecoder::decode_png(const DatumFields& d, const RecordShape& shape, std::uint8_t* dst) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, d.data, d.data_size))
    throw ImageError(fmt::format("corrupt PNG: {}", png.message));
  const bool gray_source = (png.format & PNG_FORMAT_FLAG_COLOR) == 0;
  if (int(png.height) != shape.height || int(png.width) != shape.width) {
    const int h = int(png.height), w = int(png.width);
    png_image_free(&png);
    wrong_size(h, w, gray_source ? 1 : 3, shape);
  }
  // A colour file for a gray dataset goes through RGB and DIGITS' luma weights (libpng's own
  // gray conversion works in linear light), as decode_image does.
  const bool via_rgb = shape.channels == 1 && !gray_source;
  png.format = shape.channels == 1 && gray_source ? PNG_FORMAT_GRAY
               : via_rgb                          ? PNG_FORMAT_RGB
                                                  : PNG_FORMAT_BGR;
  const std::size_t plane = std::size_t(shape.height) * shape.width;
  if (via_rgb) scratch_.resize(plane * 3);
  png_color white{255, 255, 255};  // transparent pixels composited on white, as DIGITS does
  if (!png_image_finish_read(&png, &white, via_rgb ? scratch_.data() : dst, 0, nullptr)) {
    const std::string msg = png.message;
    png_image_free(&png);
    throw ImageError(fmt::format("corrupt or truncated PNG: {}", msg));
  }
  if (via_rgb)
    for (std::size_t i = 0; i < plane; ++i) {
      const std::uint8_t* p = &scratch_[3 * i];
      dst[i] = std::uint8_t((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
    }
}

}  // namespace incept::data

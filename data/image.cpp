// Image codecs (image.h): libjpeg-turbo, libpng, and small BMP / PPM readers.
#include "data/image.h"

#include <fmt/format.h>
#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cstring>

namespace incept::data {
namespace {

// One decompressor and one compressor per thread: tjInit* costs more than a small decode.
// The compressor writes into a worst-case buffer kept for the thread (no allocation per file).
struct TjHandles {
  tjhandle dec = nullptr;
  tjhandle enc = nullptr;
  unsigned char* jpeg_buf = nullptr;
  unsigned long jpeg_buf_size = 0;
  ~TjHandles() {
    if (dec) tjDestroy(dec);
    if (enc) tjDestroy(enc);
    if (jpeg_buf) tjFree(jpeg_buf);
  }
};
thread_local TjHandles t_tj;

tjhandle tj_decompressor() {
  if (!t_tj.dec) t_tj.dec = tjInitDecompress();
  if (!t_tj.dec) throw ImageError("libjpeg-turbo: cannot create a decompressor");
  return t_tj.dec;
}
// After a failed decode the handle may keep a broken state: start the next image afresh.
void reset_decompressor() {
  if (t_tj.dec) tjDestroy(t_tj.dec);
  t_tj.dec = nullptr;
}

tjhandle tj_compressor() {
  if (!t_tj.enc) t_tj.enc = tjInitCompress();
  if (!t_tj.enc) throw ImageError("libjpeg-turbo: cannot create a compressor");
  return t_tj.enc;
}

// The thread's output buffer, grown to tjBufSize(w, h, subsamp) (the worst case).
unsigned char* tj_jpeg_buffer(int w, int h, int subsamp, unsigned long* size) {
  const unsigned long need = tjBufSize(w, h, subsamp);
  if (need == static_cast<unsigned long>(-1))
    throw ImageError(fmt::format("cannot encode {}x{} as JPEG", w, h));
  if (need > t_tj.jpeg_buf_size) {
    if (t_tj.jpeg_buf) tjFree(t_tj.jpeg_buf);
    t_tj.jpeg_buf_size = 0;
    t_tj.jpeg_buf = tjAlloc(int(need));
    if (!t_tj.jpeg_buf) throw ImageError("JPEG encode: out of memory");
    t_tj.jpeg_buf_size = need;
  }
  *size = t_tj.jpeg_buf_size;
  return t_tj.jpeg_buf;
}

void check_dims(const ImageInfo& info, std::int64_t max_pixels) {
  if (info.width <= 0 || info.height <= 0)
    throw ImageError(
        fmt::format("invalid {} dimensions {}x{}", image_format_name(info.format), info.width, info.height));
  const std::int64_t px = std::int64_t(info.width) * info.height;
  if (px > max_pixels)
    throw ImageError(fmt::format("image is {}x{} = {} pixels, above the limit of {} (--max-pixels)",
                                 info.width, info.height, px, max_pixels));
}

std::uint32_t le32(const std::uint8_t* p) {
  return p[0] | p[1] << 8 | p[2] << 16 | std::uint32_t(p[3]) << 24;
}
std::uint16_t le16(const std::uint8_t* p) {
  return std::uint16_t(p[0] | p[1] << 8);
}

// ---- JPEG ----------------------------------------------------------------------
Image decode_jpeg(const std::uint8_t* data, std::size_t size, const ImageInfo& info,
                  const DecodeOptions& opt) {
  const int num = 1, den = jpeg_scale_denominator(info.width, info.height, opt);
  const int w = TJSCALED(info.width, (tjscalingfactor{num, den}));
  const int h = TJSCALED(info.height, (tjscalingfactor{num, den}));
  const int c = opt.channels == 1 ? 1 : 3;
  Image img(w, h, c);
  // FASTDCT + FASTUPSAMPLE: ~10% faster; the difference vanishes in the downscale that follows.
  const int rc = tjDecompress2(tj_decompressor(), data, static_cast<unsigned long>(size), img.pixels.data(),
                               w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, TJFLAG_FASTDCT | TJFLAG_FASTUPSAMPLE);
  if (rc != 0) {
    const std::string msg = tjGetErrorStr2(t_tj.dec);
    const bool warning = tjGetErrorCode(t_tj.dec) == TJERR_WARNING;
    reset_decompressor();
    // Warnings (extraneous bytes, odd markers) still give a full image, as PIL accepts them;
    // a premature end means missing rows.
    if (!warning || msg.find("Premature end") != std::string::npos)
      throw ImageError(fmt::format("corrupt or truncated JPEG: {}", msg));
  }
  return img;
}

void decode_jpeg_planes_impl(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt,
                             YuvPlanes* p) {
  int w0 = 0, h0 = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj_decompressor(), data, static_cast<unsigned long>(size), &w0, &h0, &subsamp,
                          &colorspace) != 0) {
    const std::string msg = tjGetErrorStr2(t_tj.dec);
    reset_decompressor();
    throw ImageError(fmt::format("corrupt JPEG header: {}", msg));
  }
  const ImageInfo info{ImageFormat::kJpeg, w0, h0};
  check_dims(info, opt.max_pixels);
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) throw ImageError("CMYK JPEG: no YCbCr planes");
  const int den = jpeg_scale_denominator(w0, h0, opt);
  p->width = TJSCALED(w0, (tjscalingfactor{1, den}));
  p->height = TJSCALED(h0, (tjscalingfactor{1, den}));
  const int ncomp = subsamp == TJSAMP_GRAY ? 1 : 3;
  Image* planes[3] = {&p->y, &p->cb, &p->cr};
  unsigned char* dst[3] = {};
  int strides[3] = {};
  for (int c = 0; c < 3; ++c) {
    if (c >= ncomp) {
      planes[c]->reset(0, 0, 1);
      continue;
    }
    planes[c]->reset(tjPlaneWidth(c, p->width, subsamp), tjPlaneHeight(c, p->height, subsamp), 1);
    dst[c] = planes[c]->pixels.data();
    strides[c] = planes[c]->width;
  }
  // FASTDCT only at full scale: libjpeg-turbo 2.1's scaled raw decode with it gives garbage chroma.
  const int rc = tjDecompressToYUVPlanes(tj_decompressor(), data, static_cast<unsigned long>(size), dst,
                                         p->width, strides, p->height, den == 1 ? TJFLAG_FASTDCT : 0);
  if (rc != 0) {
    const std::string msg = tjGetErrorStr2(t_tj.dec);
    const bool warning = tjGetErrorCode(t_tj.dec) == TJERR_WARNING;
    reset_decompressor();
    if (!warning || msg.find("Premature end") != std::string::npos)
      throw ImageError(fmt::format("corrupt or truncated JPEG: {}", msg));
  }
  // libjpeg-turbo pads Y to whole chroma samples (500x375 4:2:0 gives 500x376): crop it to the
  // image, or resizing would stretch the padding into the picture.
  Image& y = p->y;
  if (y.width != p->width)
    for (int r = 1; r < p->height; ++r)
      std::memmove(y.pixels.data() + std::size_t(r) * p->width, y.row(r), std::size_t(p->width));
  y.reset(p->width, p->height, 1);
}

// ---- PNG -----------------------------------------------------------------------
Image decode_png(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, data, size))
    throw ImageError(fmt::format("corrupt PNG: {}", png.message));
  ImageInfo info{ImageFormat::kPng, int(png.width), int(png.height)};
  try {
    check_dims(info, opt.max_pixels);
  } catch (...) {
    png_image_free(&png);
    throw;
  }
  // Always RGB: libpng's own gray conversion works in linear light, not with DIGITS' weights.
  const bool gray_source = (png.format & PNG_FORMAT_FLAG_COLOR) == 0;
  const int c = gray_source && opt.channels == 1 ? 1 : 3;
  png.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  Image img(info.width, info.height, c);
  // Transparent pixels are composited on white, as DIGITS does.
  png_color white{255, 255, 255};
  if (!png_image_finish_read(&png, &white, img.pixels.data(), 0, nullptr)) {
    const std::string msg = png.message;
    png_image_free(&png);
    throw ImageError(fmt::format("corrupt or truncated PNG: {}", msg));
  }
  return to_channels(std::move(img), opt.channels == 1 ? 1 : 3);
}

// ---- BMP (uncompressed 8/24/32-bit) ----------------------------------------------
ImageInfo bmp_info(const std::uint8_t* d, std::size_t size) {
  if (size < 54) throw ImageError("truncated BMP header");
  const auto h = std::int32_t(le32(d + 22));
  return {ImageFormat::kBmp, std::int32_t(le32(d + 18)), h < 0 ? -h : h};
}

Image decode_bmp(const std::uint8_t* d, std::size_t size, const ImageInfo& info) {
  const std::uint32_t offset = le32(d + 10), header = le32(d + 14);
  const bool top_down = std::int32_t(le32(d + 22)) < 0;
  const int bpp = le16(d + 28);
  const std::uint32_t compression = le32(d + 30);
  if (header < 40 || !(bpp == 8 || bpp == 24 || bpp == 32) || !(compression == 0 || compression == 3))
    throw ImageError(fmt::format("unsupported BMP ({} bits, compression {})", bpp, compression));
  const std::size_t stride = (std::size_t(bpp) * info.width + 31) / 32 * 4;
  if (offset > size || size - offset < stride * info.height) throw ImageError("truncated BMP data");
  std::uint32_t ncolors = le32(d + 46);
  if (bpp == 8 && ncolors == 0) ncolors = 256;
  const std::uint8_t* palette = d + 14 + header;
  if (bpp == 8 && (14 + header + 4 * std::size_t(ncolors) > size)) throw ImageError("truncated BMP palette");
  Image img(info.width, info.height, 3);
  for (int y = 0; y < info.height; ++y) {
    const std::uint8_t* src = d + offset + stride * (top_down ? y : info.height - 1 - y);
    std::uint8_t* dst = img.row(y);
    for (int x = 0; x < info.width; ++x, dst += 3) {
      const std::uint8_t* p;
      if (bpp == 8) {
        const unsigned idx = src[x];
        p = idx < ncolors ? palette + 4 * idx : palette;
      } else {
        p = src + x * (bpp / 8);
      }
      dst[0] = p[2], dst[1] = p[1], dst[2] = p[0];  // stored BGR(A)
    }
  }
  return img;
}

// ---- PPM / PGM (binary P6 / P5) --------------------------------------------------
struct PnmHeader {
  ImageInfo info;
  int maxval = 0;
  int channels = 0;
  std::size_t data_offset = 0;
};

PnmHeader pnm_header(const std::uint8_t* d, std::size_t size) {
  PnmHeader h;
  h.channels = d[1] == '6' ? 3 : 1;
  std::size_t pos = 2;
  long values[3];
  for (long& v : values) {
    while (pos < size && (std::isspace(d[pos]) || d[pos] == '#')) {
      if (d[pos] == '#')
        while (pos < size && d[pos] != '\n') ++pos;
      else
        ++pos;
    }
    if (pos >= size || !std::isdigit(d[pos])) throw ImageError("corrupt PPM header");
    v = 0;
    while (pos < size && std::isdigit(d[pos]) && v < 1'000'000'000) v = v * 10 + (d[pos++] - '0');
  }
  if (pos >= size) throw ImageError("truncated PPM header");
  h.data_offset = pos + 1;  // exactly one whitespace byte
  h.info = {ImageFormat::kPpm, int(std::min(values[0], 1L << 30)), int(std::min(values[1], 1L << 30))};
  h.maxval = int(values[2]);
  if (h.maxval <= 0 || h.maxval > 65535) throw ImageError("corrupt PPM maxval");
  return h;
}

Image decode_ppm(const std::uint8_t* d, std::size_t size) {
  const PnmHeader h = pnm_header(d, size);
  const int bytes = h.maxval > 255 ? 2 : 1;
  const std::size_t n = std::size_t(h.info.width) * h.info.height * h.channels;
  if (size - h.data_offset < n * bytes) throw ImageError("truncated PPM data");
  Image img(h.info.width, h.info.height, h.channels);
  const std::uint8_t* src = d + h.data_offset;
  for (std::size_t i = 0; i < n; ++i) {
    const int v = bytes == 2 ? (src[2 * i] << 8 | src[2 * i + 1]) : src[i];
    img.pixels[i] = std::uint8_t((v * 255 + h.maxval / 2) / h.maxval);
  }
  return img;
}

}  // namespace

int jpeg_scale_denominator(int w, int h, const DecodeOptions& opt) {
  // Largest DCT reduction whose output still covers the size the caller needs.
  if (opt.min_width > 0 && opt.min_height > 0)
    for (int d : {8, 4, 2})
      if ((w + d - 1) / d >= opt.min_width && (h + d - 1) / d >= opt.min_height) return d;
  return 1;
}

void decode_jpeg_planes(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt,
                        YuvPlanes* out) {
  if (size == 0) throw ImageError("empty file (0 bytes)");
  decode_jpeg_planes_impl(data, size, opt, out);
}

YuvPlanes decode_jpeg_planes(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt) {
  YuvPlanes p;
  decode_jpeg_planes(data, size, opt, &p);
  return p;
}

Image ycbcr_to_rgb(const Image& y, const Image& cb, const Image& cr) {
  Image out(y.width, y.height, 3);
  const std::size_t n = std::size_t(y.width) * y.height;
  const std::uint8_t *py = y.pixels.data(), *pb = cb.pixels.data(), *pr = cr.pixels.data();
  std::uint8_t* o = out.pixels.data();
  auto clamp = [](int v) { return std::uint8_t(v < 0 ? 0 : v > 255 ? 255 : v); };
  for (std::size_t i = 0; i < n; ++i) {  // JFIF full range, 16-bit fixed point as libjpeg
    const int Y = py[i], Cb = pb[i] - 128, Cr = pr[i] - 128;
    o[3 * i] = clamp(Y + ((91881 * Cr + 32768) >> 16));
    o[3 * i + 1] = clamp(Y + ((-22554 * Cb - 46802 * Cr + 32768) >> 16));
    o[3 * i + 2] = clamp(Y + ((116130 * Cb + 32768) >> 16));
  }
  return out;
}

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kPpm:
      return "PPM";
    default:
      return "unknown";
  }
}

ImageInfo read_image_info(const std::uint8_t* d, std::size_t size) {
  if (size == 0) throw ImageError("empty file (0 bytes)");
  ImageInfo info;
  if (size >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj_decompressor(), d, static_cast<unsigned long>(size), &w, &h, &subsamp,
                            &colorspace) != 0) {
      const std::string msg = tjGetErrorStr2(t_tj.dec);
      reset_decompressor();
      throw ImageError(fmt::format("corrupt JPEG header: {}", msg));
    }
    info = {ImageFormat::kJpeg, w, h, subsamp == TJSAMP_420 && colorspace == TJCS_YCbCr};
  } else if (size >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
    if (size < 24) throw ImageError("truncated PNG header");
    auto be32 = [](const std::uint8_t* p) {
      return std::uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3];
    };
    info = {ImageFormat::kPng, int(std::min<std::uint32_t>(be32(d + 16), 1u << 30)),
            int(std::min<std::uint32_t>(be32(d + 20), 1u << 30))};
  } else if (size >= 2 && d[0] == 'B' && d[1] == 'M') {
    info = bmp_info(d, size);
  } else if (size >= 2 && d[0] == 'P' && (d[1] == '6' || d[1] == '5')) {
    info = pnm_header(d, size).info;
  } else {
    throw ImageError("not an image (no JPEG, PNG, BMP or PPM signature)");
  }
  return info;
}

Image decode_image(const std::uint8_t* data, std::size_t size, const DecodeOptions& opt) {
  const ImageInfo info = read_image_info(data, size);
  check_dims(info, opt.max_pixels);
  switch (info.format) {
    case ImageFormat::kJpeg:
      return decode_jpeg(data, size, info, opt);
    case ImageFormat::kPng:
      return decode_png(data, size, opt);
    case ImageFormat::kBmp:
      return to_channels(decode_bmp(data, size, info), opt.channels);
    case ImageFormat::kPpm:
      return to_channels(decode_ppm(data, size), opt.channels);
    default:
      throw ImageError("not an image");
  }
}

Image to_channels(Image img, int channels) {
  if (img.channels == channels) return img;
  Image out(img.width, img.height, channels);
  const std::size_t n = std::size_t(img.width) * img.height;
  if (channels == 3 && img.channels == 1) {
    for (std::size_t i = 0; i < n; ++i)
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = img.pixels[i];
  } else if (channels == 1 && img.channels == 3) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t* p = &img.pixels[3 * i];
      out.pixels[i] = std::uint8_t((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
    }
  } else {
    throw ImageError(fmt::format("cannot convert {} channels to {}", img.channels, channels));
  }
  return out;
}

std::string encode_jpeg(const Image& img, int quality) {
  const bool gray = img.channels == 1;
  const int subsamp = gray ? TJSAMP_GRAY : TJSAMP_420;
  unsigned long len = 0;
  unsigned char* buf = tj_jpeg_buffer(img.width, img.height, subsamp, &len);
  if (tjCompress2(tj_compressor(), img.pixels.data(), img.width, 0, img.height, gray ? TJPF_GRAY : TJPF_RGB,
                  &buf, &len, subsamp, quality, TJFLAG_NOREALLOC) != 0)
    throw ImageError(fmt::format("JPEG encode failed: {}", tjGetErrorStr2(t_tj.enc)));
  return std::string(reinterpret_cast<const char*>(buf), len);
}

namespace {
void check_420(const Image& y, const Image& cb, const Image& cr) {
  // Odd sizes would need Y padded to whole chroma samples (libjpeg-turbo reads it so).
  if (y.width % 2 || y.height % 2)
    throw ImageError(fmt::format("4:2:0 planes: {}x{} is not even in both directions", y.width, y.height));
  const int cw = y.width / 2, ch = y.height / 2;
  if (cb.width != cw || cb.height != ch || cr.width != cw || cr.height != ch || y.channels != 1)
    throw ImageError(fmt::format("4:2:0 planes: Y {}x{} needs chroma {}x{}, got {}x{} and {}x{}", y.width,
                                 y.height, cw, ch, cb.width, cb.height, cr.width, cr.height));
}
}  // namespace

void encode_jpeg_420(const Image& y, const Image& cb, const Image& cr, int quality, std::string* out) {
  check_420(y, cb, cr);
  const unsigned char* planes[3] = {y.pixels.data(), cb.pixels.data(), cr.pixels.data()};
  const int strides[3] = {y.width, cb.width, cr.width};
  unsigned long len = 0;
  unsigned char* buf = tj_jpeg_buffer(y.width, y.height, TJSAMP_420, &len);
  if (tjCompressFromYUVPlanes(tj_compressor(), planes, y.width, strides, y.height, TJSAMP_420, &buf, &len,
                              quality, TJFLAG_NOREALLOC) != 0)
    throw ImageError(fmt::format("JPEG encode failed: {}", tjGetErrorStr2(t_tj.enc)));
  out->assign(reinterpret_cast<const char*>(buf), len);
}

namespace {
// libjpeg's h2v2 "fancy" upsampling (jdsample.c, the default of every libjpeg decoder, OpenCV's
// included): each output is 9/16, 3/16, 3/16, 1/16 of its four nearest chroma samples, edges
// replicated, with libjpeg's alternating rounding bias, so the result is bit-exact with it.
// src: cw x ch; dst: (2 cw) x (2 ch).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
void h2v2_fancy_row(const std::uint8_t* __restrict cur, const std::uint8_t* __restrict near, int cw,
                    std::int16_t* __restrict colsum, std::uint8_t* __restrict out) {
  for (int i = 0; i < cw; ++i) colsum[i] = std::int16_t(3 * cur[i] + near[i]);
  if (cw == 1) {
    out[0] = out[1] = std::uint8_t((4 * colsum[0] + 8) >> 4);
    return;
  }
  out[0] = std::uint8_t((4 * colsum[0] + 8) >> 4);
  out[1] = std::uint8_t((3 * colsum[0] + colsum[1] + 7) >> 4);
  for (int i = 1; i < cw - 1; ++i) {
    out[2 * i] = std::uint8_t((3 * colsum[i] + colsum[i - 1] + 8) >> 4);
    out[2 * i + 1] = std::uint8_t((3 * colsum[i] + colsum[i + 1] + 7) >> 4);
  }
  out[2 * cw - 2] = std::uint8_t((3 * colsum[cw - 1] + colsum[cw - 2] + 8) >> 4);
  out[2 * cw - 1] = std::uint8_t((4 * colsum[cw - 1] + 7) >> 4);
}

void h2v2_fancy_upsample(const Image& src, Image* dst) {
  const int cw = src.width, ch = src.height;
  dst->reset(2 * cw, 2 * ch, 1);
  thread_local std::vector<std::int16_t> colsum_buf;
  colsum_buf.resize(std::size_t(cw));
  std::int16_t* colsum = colsum_buf.data();
  for (int r = 0; r < ch; ++r) {
    h2v2_fancy_row(src.row(r), src.row(std::max(r - 1, 0)), cw, colsum, dst->row(2 * r));
    h2v2_fancy_row(src.row(r), src.row(std::min(r + 1, ch - 1)), cw, colsum, dst->row(2 * r + 1));
  }
}
}  // namespace

void ycbcr420_to_rgb(const Image& y, const Image& cb, const Image& cr, Image* rgb) {
  check_420(y, cb, cr);
  // Chroma upsampled as a decoder does it, then libjpeg-turbo's (SIMD) colour conversion of
  // 4:4:4 planes: exactly what libjpeg would decode from these planes stored without loss.
  thread_local Image cb_full, cr_full;
  h2v2_fancy_upsample(cb, &cb_full);
  h2v2_fancy_upsample(cr, &cr_full);
  const unsigned char* planes[3] = {y.pixels.data(), cb_full.pixels.data(), cr_full.pixels.data()};
  const int strides[3] = {y.width, cb_full.width, cr_full.width};
  rgb->reset(y.width, y.height, 3);
  if (tjDecodeYUVPlanes(tj_decompressor(), planes, strides, TJSAMP_444, rgb->pixels.data(), y.width, 0,
                        y.height, TJPF_RGB, 0) != 0) {
    const std::string msg = tjGetErrorStr2(t_tj.dec);
    reset_decompressor();
    throw ImageError(fmt::format("YCbCr 4:2:0 -> RGB failed: {}", msg));
  }
}

namespace {
void png_write_to_string(png_structp png, png_bytep data, png_size_t len) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), len);
}
void png_no_flush(png_structp) {}
}  // namespace

std::string encode_png(const Image& img, int compression_level) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    throw ImageError("PNG encode: out of memory");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw ImageError("PNG encode failed");
  }
  png_set_write_fn(png, &out, png_write_to_string, png_no_flush);
  png_set_compression_level(png, compression_level);
  png_set_IHDR(png, info, img.width, img.height, 8,
               img.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img.height; ++y) png_write_row(png, const_cast<png_bytep>(img.row(y)));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace incept::data

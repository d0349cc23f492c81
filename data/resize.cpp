// Bilinear resize and DIGITS' fit modes (resize.h).
#include "data/resize.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace incept::data {
namespace {

constexpr int kPrecisionBits = 22;  // fixed-point weights: 255 * 2^22 fits in int32

// Per output index: first source index, tap count, and fixed-point weights (sum 2^22).
struct Taps {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<std::int32_t> weights;  // max_taps per output
  int max_taps = 0;
  bool fixed = false;  // every output uses exactly max_taps taps
};

Taps make_taps(int in, int out) {
  const double scale = double(in) / out;
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter_scale;  // triangle of radius 1, stretched when shrinking
  Taps t;
  t.max_taps = int(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.weights.assign(std::size_t(out) * t.max_taps, 0);
  std::vector<double> w(t.max_taps);
  for (int o = 0; o < out; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(0, int(std::floor(center - support)));
    const int hi = std::min(in, int(std::ceil(center + support)));
    double sum = 0;
    int n = 0;
    for (int i = lo; i < hi && n < t.max_taps; ++i, ++n) {
      const double x = std::fabs((i + 0.5 - center) / filter_scale);
      w[n] = x < 1.0 ? 1.0 - x : 0.0;
      sum += w[n];
    }
    t.first[o] = lo;
    t.count[o] = n;
    std::int32_t* dst = &t.weights[std::size_t(o) * t.max_taps];
    std::int32_t total = 0;
    for (int k = 0; k < n; ++k)
      total += dst[k] = std::int32_t(std::lround(w[k] / sum * (1 << kPrecisionBits)));
    // Put the rounding remainder on the largest tap so flat areas stay exactly flat.
    int big = int(std::max_element(dst, dst + n) - dst);
    dst[big] += (1 << kPrecisionBits) - total;
  }
  // Give every output exactly max_taps taps (zero weights where unused, window shifted to
  // stay inside the row) so the horizontal kernels run a fixed-length loop.
  if (in >= t.max_taps) {
    for (int o = 0; o < out; ++o) {
      std::int32_t* dst = &t.weights[std::size_t(o) * t.max_taps];
      const int lo = std::min(t.first[o], in - t.max_taps);
      const int shift = t.first[o] - lo;
      if (shift > 0) {
        for (int k = t.count[o] - 1; k >= 0; --k) dst[k + shift] = dst[k];
        std::fill(dst, dst + shift, 0);
      }
      t.first[o] = lo;
      t.count[o] = t.max_taps;
    }
    t.fixed = true;
  }
  return t;
}

// The last few filters built on this thread: ingest resizes every file of a folder between
// the same few sizes, and building taps costs as much as a small resize.
const Taps& cached_taps(int in, int out) {
  struct Entry {
    int in = -1, out = -1;
    Taps taps;
  };
  constexpr int kEntries = 8;
  thread_local Entry cache[kEntries];
  thread_local int next = 0;
  for (Entry& e : cache)
    if (e.in == in && e.out == out) return e.taps;
  Entry& e = cache[next];
  next = (next + 1) % kEntries;
  e.in = -1;  // stays invalid if make_taps throws
  e.taps = make_taps(in, out);
  e.in = in, e.out = out;
  return e.taps;
}

inline std::uint8_t clamp_round(std::int32_t acc) {
  acc = (acc + (1 << (kPrecisionBits - 1))) >> kPrecisionBits;
  return std::uint8_t(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

// Horizontal pass with the channel count known at compile time, so the taps loop keeps
// all channel sums in registers (the generic loop was 4x slower).
// Both passes are built for AVX2 and for baseline x86-64, picked at load time (the
// baseline has no 32-bit vector multiply).
#if defined(__x86_64__) && defined(__GNUC__)
#define INCEPT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define INCEPT_SIMD_CLONES
#endif

template <int C>
INCEPT_SIMD_CLONES void resize_rows_c(const Image& src, Image& dst, const Taps& t) {
  for (int y = 0; y < src.height; ++y) {
    const std::uint8_t* in = src.row(y);
    std::uint8_t* out = dst.row(y);
    for (int x = 0; x < dst.width; ++x) {
      const std::int32_t* w = &t.weights[std::size_t(x) * t.max_taps];
      const std::uint8_t* p = in + std::size_t(t.first[x]) * C;
      std::int32_t acc[C] = {};
      for (int k = 0, n = t.count[x]; k < n; ++k, p += C)
        for (int ch = 0; ch < C; ++ch) acc[ch] += w[k] * p[ch];
      for (int ch = 0; ch < C; ++ch) out[x * C + ch] = clamp_round(acc[ch]);
    }
  }
}

// Same with the tap count fixed too (T = 3 for enlarging, 5 / 7 / 9 for shrinking by up to
// 2x / 3x / 4x): the inner loops unroll fully.
template <int C, int T>
INCEPT_SIMD_CLONES void resize_rows_ct(const Image& src, Image& dst, const Taps& t) {
  for (int y = 0; y < src.height; ++y) {
    const std::uint8_t* in = src.row(y);
    std::uint8_t* out = dst.row(y);
    for (int x = 0; x < dst.width; ++x) {
      const std::int32_t* w = &t.weights[std::size_t(x) * T];
      const std::uint8_t* p = in + std::size_t(t.first[x]) * C;
      std::int32_t acc[C] = {};
      for (int k = 0; k < T; ++k)
        for (int ch = 0; ch < C; ++ch) acc[ch] += w[k] * p[k * C + ch];
      for (int ch = 0; ch < C; ++ch) out[x * C + ch] = clamp_round(acc[ch]);
    }
  }
}

template <int C>
void resize_rows_fixed(const Image& src, Image& dst, const Taps& t) {
  switch (t.max_taps) {
    case 3:
      return resize_rows_ct<C, 3>(src, dst, t);
    case 5:
      return resize_rows_ct<C, 5>(src, dst, t);
    case 7:
      return resize_rows_ct<C, 7>(src, dst, t);
    case 9:
      return resize_rows_ct<C, 9>(src, dst, t);
    default:
      return resize_rows_c<C>(src, dst, t);
  }
}

void resize_rows(const Image& src, Image& dst, const Taps& t) {  // horizontal
  if (t.fixed && src.channels == 3) return resize_rows_fixed<3>(src, dst, t);
  if (t.fixed && src.channels == 1) return resize_rows_fixed<1>(src, dst, t);
  if (t.fixed && src.channels == 4) return resize_rows_fixed<4>(src, dst, t);
  switch (src.channels) {
    case 1:
      return resize_rows_c<1>(src, dst, t);
    case 3:
      return resize_rows_c<3>(src, dst, t);
    case 4:
      return resize_rows_c<4>(src, dst, t);
    default:
      throw Error(fmt::format("resize: {} channels not supported", src.channels));
  }
}

INCEPT_SIMD_CLONES void resize_cols(const Image& src, Image& dst, const Taps& t) {  // vertical
  const std::size_t row_len = std::size_t(src.width) * src.channels;
  std::vector<std::int32_t> acc(row_len);
  for (int y = 0; y < dst.height; ++y) {
    std::fill(acc.begin(), acc.end(), 0);
    const std::int32_t* w = &t.weights[std::size_t(y) * t.max_taps];
    for (int k = 0; k < t.count[y]; ++k) {
      const std::uint8_t* in = src.row(t.first[y] + k);
      const std::int32_t wk = w[k];
      for (std::size_t i = 0; i < row_len; ++i) acc[i] += wk * in[i];
    }
    std::uint8_t* out = dst.row(y);
    for (std::size_t i = 0; i < row_len; ++i) out[i] = clamp_round(acc[i]);
  }
}

// Copies src into dst at (x0, y0), cropping src where it overhangs dst.
void blit(const Image& src, Image& dst, int x0, int y0) {
  const int c = src.channels;
  for (int y = 0; y < dst.height; ++y) {
    const int sy = y - y0;
    if (sy < 0 || sy >= src.height) continue;
    const int xs = std::max(0, x0), xe = std::min(dst.width, x0 + src.width);
    if (xe > xs)
      std::copy_n(src.row(sy) + std::size_t(xs - x0) * c, std::size_t(xe - xs) * c, dst.row(y) + xs * c);
  }
}

int py_round(double v) {
  return int(std::nearbyint(v));
}  // round half to even, as Python 3

}  // namespace

ResizeMode parse_resize_mode(std::string_view name) {
  if (name == "squash") return ResizeMode::kSquash;
  if (name == "crop") return ResizeMode::kCrop;
  if (name == "fill") return ResizeMode::kFill;
  if (name == "half_crop") return ResizeMode::kHalfCrop;
  throw Error(fmt::format("unknown resize mode '{}': use squash, crop, fill or half_crop", name));
}

const char* resize_mode_name(ResizeMode mode) {
  switch (mode) {
    case ResizeMode::kSquash:
      return "squash";
    case ResizeMode::kCrop:
      return "crop";
    case ResizeMode::kFill:
      return "fill";
    case ResizeMode::kHalfCrop:
      return "half_crop";
  }
  return "?";
}

Extent resize_extent(int src_w, int src_h, int w, int h, ResizeMode mode) {
  const double wr = double(src_w) / w, hr = double(src_h) / h;
  if (mode == ResizeMode::kSquash || wr == hr) return {w, h};
  Extent e;
  if (mode == ResizeMode::kCrop) {
    if (wr > hr)
      e = {py_round(src_w / hr), h};
    else
      e = {w, py_round(src_h / wr)};
  } else if (mode == ResizeMode::kFill) {
    if (wr > hr) {
      e = {w, py_round(src_h / wr)};
      if ((h - e.height) % 2) ++e.height;
    } else {
      e = {py_round(src_w / hr), h};
      if ((w - e.width) % 2) ++e.width;
    }
  } else {  // half_crop: the average of both ratios
    const double r = (wr + hr) / 2;
    e = {py_round(src_w / r), py_round(src_h / r)};
    if (wr > hr && (h - e.height) % 2)
      ++e.height;
    else if (wr < hr && (w - e.width) % 2)
      ++e.width;
  }
  e.width = std::max(1, e.width);
  e.height = std::max(1, e.height);
  return e;
}

void resize_bilinear(const Image& src, int width, int height, Image* dst) {
  if (dst == &src) throw Error("resize_bilinear: source and destination are the same image");
  if (src.width == width && src.height == height) {
    *dst = src;
    return;
  }
  if (src.width == width || src.height == height || height < src.height) {
    // Vertical first: it vectorizes over whole rows, and a vertical reduction leaves fewer
    // rows for the (scalar) horizontal pass.
    if (src.height == height) {
      dst->reset(width, height, src.channels);
      resize_rows(src, *dst, cached_taps(src.width, width));
      return;
    }
    if (src.width == width) {
      dst->reset(width, height, src.channels);
      resize_cols(src, *dst, cached_taps(src.height, height));
      return;
    }
    thread_local Image tmp;
    tmp.reset(src.width, height, src.channels);
    resize_cols(src, tmp, cached_taps(src.height, height));
    dst->reset(width, height, src.channels);
    resize_rows(tmp, *dst, cached_taps(src.width, width));
    return;
  }
  thread_local Image tmp;
  tmp.reset(width, src.height, src.channels);
  resize_rows(src, tmp, cached_taps(src.width, width));
  dst->reset(width, height, src.channels);
  resize_cols(tmp, *dst, cached_taps(src.height, height));
}

Image resize_bilinear(const Image& src, int width, int height) {
  Image out;
  resize_bilinear(src, width, height, &out);
  return out;
}

Image decode_jpeg_resized(const std::uint8_t* data, std::size_t size, int width, int height,
                          const DecodeOptions& opt) {
  // Scaled DCT decodes keep more chroma detail through libjpeg's own upsampling, and CMYK
  // files have no YCbCr planes: those take decode + resize.
  const ImageInfo info = read_image_info(data, size);
  if (info.format != ImageFormat::kJpeg || jpeg_scale_denominator(info.width, info.height, opt) > 1)
    return resize_bilinear(decode_image(data, size, opt), width, height);
  thread_local YuvPlanes p;
  try {
    decode_jpeg_planes(data, size, opt, &p);
  } catch (const ImageError& e) {
    if (std::string(e.what()).find("CMYK") == std::string::npos) throw;
    return resize_bilinear(decode_image(data, size, opt), width, height);
  }
  const Image y = resize_bilinear(p.y, width, height);
  if (p.cb.pixels.empty()) return to_channels(y, 3);
  return ycbcr_to_rgb(y, resize_bilinear(p.cb, width, height), resize_bilinear(p.cr, width, height));
}

Image fit_image(const Image& src, int width, int height, ResizeMode mode, std::uint64_t noise_seed) {
  const Extent e = resize_extent(src.width, src.height, width, height, mode);
  Image resized = resize_bilinear(src, e.width, e.height);
  if (e.width == width && e.height == height) return resized;
  Image out(width, height, src.channels);
  if (e.width < width || e.height < height) {  // fill / half_crop pad with noise 0..254
    std::uint64_t s = noise_seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& v : out.pixels) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;  // xorshift64
      v = std::uint8_t((s >> 24) % 255);
    }
  }
  // Centre (Python's round((resized - target) / 2) for the crop offset).
  const int x0 = e.width > width ? -py_round((e.width - width) / 2.0) : (width - e.width) / 2;
  const int y0 = e.height > height ? -py_round((e.height - height) / 2.0) : (height - e.height) / 2;
  blit(resized, out, x0, y0);
  return out;
}

}  // namespace incept::data

// Datum records, keys and the mean image (datum.h).
#include "data/datum.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "data/caffe.pb.h"

namespace incept::data {

Encoding parse_encoding(const std::string& name) {
  if (name == "none") return Encoding::kNone;
  if (name == "png") return Encoding::kPng;
  if (name == "jpg" || name == "jpeg") return Encoding::kJpeg;
  throw Error(fmt::format("unknown encoding '{}': use jpg, png or none", name));
}

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::kNone:
      return "none";
    case Encoding::kPng:
      return "png";
    case Encoding::kJpeg:
      return "jpg";
  }
  return "?";
}

std::string datum_key(std::int64_t index, int label) {
  return fmt::format("{:08d}_{}", index, label);
}

bool parse_datum_key(const std::string& key, std::int64_t* index, int* label) {
  const auto us = key.find('_');
  if (us == std::string::npos || us < 1 || us + 1 >= key.size()) return false;
  std::int64_t i = 0;
  int l = 0;
  for (std::size_t k = 0; k < us; ++k) {
    if (key[k] < '0' || key[k] > '9') return false;
    i = i * 10 + (key[k] - '0');
  }
  for (std::size_t k = us + 1; k < key.size(); ++k) {
    if (key[k] < '0' || key[k] > '9') return false;
    l = l * 10 + (key[k] - '0');
  }
  *index = i;
  *label = l;
  return true;
}

std::string make_datum(const Image& img, int label, Encoding encoding, int jpeg_quality) {
  caffe::Datum d;
  d.set_channels(img.channels);
  d.set_height(img.height);
  d.set_width(img.width);
  d.set_label(label);
  if (encoding == Encoding::kNone) {
    // CHW with channels reversed (RGB -> BGR), as caffe.io.array_to_datum after DIGITS' swap.
    std::string* data = d.mutable_data();
    const std::size_t plane = std::size_t(img.width) * img.height;
    data->resize(plane * img.channels);
    for (int c = 0; c < img.channels; ++c) {
      const int src_c = img.channels - 1 - c;
      char* dst = data->data() + plane * c;
      for (std::size_t i = 0; i < plane; ++i) dst[i] = char(img.pixels[i * img.channels + src_c]);
    }
  } else {
    d.set_data(encoding == Encoding::kPng ? encode_png(img) : encode_jpeg(img, jpeg_quality));
    d.set_encoded(true);
  }
  return d.SerializeAsString();
}

void make_encoded_datum(const std::string& file, int channels, int width, int height, int label,
                        std::string* out) {
  caffe::Datum d;
  d.set_channels(channels);
  d.set_height(height);
  d.set_width(width);
  d.set_label(label);
  d.set_data(file);
  d.set_encoded(true);
  d.SerializeToString(out);
}

DatumImage decode_datum(const std::string& bytes) {
  caffe::Datum d;
  if (!d.ParseFromString(bytes)) throw ImageError("record is not a caffe.Datum");
  DatumImage out;
  out.label = d.label();
  out.encoded = d.encoded();
  if (d.encoded()) {
    Image rgb = decode_image(d.data(), DecodeOptions{d.channels() == 1 ? 1 : 3});
    if (rgb.channels == 3)
      for (std::size_t i = 0; i < rgb.pixels.size(); i += 3) std::swap(rgb.pixels[i], rgb.pixels[i + 2]);
    out.bgr = std::move(rgb);
    return out;
  }
  const int c = d.channels(), h = d.height(), w = d.width();
  const std::size_t plane = std::size_t(w) * h;
  if (c <= 0 || h <= 0 || w <= 0 || d.data().size() != plane * c)
    throw ImageError(fmt::format("raw Datum {}x{}x{} holds {} bytes", c, h, w, d.data().size()));
  out.bgr = Image(w, h, c);
  for (int ch = 0; ch < c; ++ch)
    for (std::size_t i = 0; i < plane; ++i)
      out.bgr.pixels[i * c + ch] = std::uint8_t(d.data()[plane * ch + i]);
  return out;
}

MeanAccumulator::MeanAccumulator(int width, int height, int channels)
    : width_(width), height_(height), channels_(channels), sums_(std::size_t(width) * height * channels, 0) {}

void MeanAccumulator::add(const Image& img) {
  if (img.width != width_ || img.height != height_ || img.channels != channels_)
    throw Error(fmt::format("mean: image {}x{}x{} differs from {}x{}x{}", img.width, img.height, img.channels,
                            width_, height_, channels_));
  std::uint64_t* s = sums_.data();
  const std::uint8_t* p = img.pixels.data();
  for (std::size_t i = 0, n = sums_.size(); i < n; ++i) s[i] += p[i];
  ++count_;
}

void MeanAccumulator::add_sums(const std::vector<std::uint32_t>& partial, std::int64_t n) {
  if (partial.size() != sums_.size()) throw Error("mean: partial sum has the wrong size");
  for (std::size_t i = 0; i < sums_.size(); ++i) sums_[i] += partial[i];
  count_ += n;
}

void MeanAccumulator::restore(std::vector<std::uint64_t> sums, std::int64_t count) {
  if (sums.size() != sums_.size()) throw Error("mean state has the wrong size");
  sums_ = std::move(sums);
  count_ = count;
}

Image MeanAccumulator::mean() const {
  Image m(width_, height_, channels_);
  if (count_ == 0) return m;
  for (std::size_t i = 0; i < sums_.size(); ++i)
    m.pixels[i] = std::uint8_t(std::nearbyint(double(sums_[i]) / double(count_)));
  return m;
}

std::string mean_blobproto(const Image& mean_rgb) {
  caffe::BlobProto blob;
  blob.set_num(1);
  blob.set_channels(mean_rgb.channels);
  blob.set_height(mean_rgb.height);
  blob.set_width(mean_rgb.width);
  const std::size_t plane = std::size_t(mean_rgb.width) * mean_rgb.height;
  auto* data = blob.mutable_data();
  data->Reserve(int(plane * mean_rgb.channels));
  for (int c = 0; c < mean_rgb.channels; ++c) {
    const int src_c = mean_rgb.channels - 1 - c;  // RGB -> BGR
    for (std::size_t i = 0; i < plane; ++i) data->Add(float(mean_rgb.pixels[i * mean_rgb.channels + src_c]));
  }
  return blob.SerializeAsString();
}

MeanBlob read_mean_blobproto(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot open mean file {}", path));
  std::stringstream ss;
  ss << f.rdbuf();
  caffe::BlobProto blob;
  if (!blob.ParseFromString(ss.str())) throw Error(fmt::format("{} is not a caffe.BlobProto", path));
  MeanBlob m;
  if (blob.has_shape() && blob.shape().dim_size() >= 3) {
    const int n = blob.shape().dim_size();
    m.channels = int(blob.shape().dim(n - 3));
    m.height = int(blob.shape().dim(n - 2));
    m.width = int(blob.shape().dim(n - 1));
  } else {
    m.channels = blob.channels(), m.height = blob.height(), m.width = blob.width();
  }
  m.chw.assign(blob.data().begin(), blob.data().end());
  if (m.chw.size() != std::size_t(m.channels) * m.height * m.width)
    throw Error(
        fmt::format("{}: blob {}x{}x{} holds {} values", path, m.channels, m.height, m.width, m.chw.size()));
  return m;
}

}  // namespace incept::data

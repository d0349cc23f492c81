// Caffe Datum records and the mean image, as DIGITS writes them: LMDB keys "%08d_%d"
// (index, label); encoded records hold a normal RGB JPEG/PNG file (so OpenCV's imdecode
// gives Caffe the BGR it expects); raw records hold CHW BGR bytes. The mean is the rounded
// uint8 mean of the training images, stored as a BlobProto (legacy 4-D dims, CHW BGR).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace incept::data {

enum class Encoding { kNone, kPng, kJpeg };
Encoding parse_encoding(const std::string& name);  // "none", "png", "jpg"
const char* encoding_name(Encoding e);

// "%08d_%d": zero-padded record index, underscore, numeric label.
std::string datum_key(std::int64_t index, int label);
// Parses a key written by datum_key; false for anything else.
bool parse_datum_key(const std::string& key, std::int64_t* index, int* label);

// Serialized caffe.Datum for an RGB/gray HWC image.
std::string make_datum(const Image& img, int label, Encoding encoding, int jpeg_quality = 90);
// Serialized encoded caffe.Datum around an image file already encoded (JPEG/PNG of an RGB or
// gray width x height image), written to *out.
void make_encoded_datum(const std::string& file, int channels, int width, int height, int label,
                        std::string* out);

// A parsed record: pixels HWC BGR (or gray) uint8, the label, and whether it was encoded.
struct DatumImage {
  Image bgr;  // channels 3 (B, G, R order) or 1
  int label = 0;
  bool encoded = false;
};
// Parses a serialized Datum and decodes it (encoded: JPEG/PNG -> BGR; raw: CHW BGR -> HWC).
DatumImage decode_datum(const std::string& bytes);

// Sum of HWC uint8 images of one size, for the mean image.
class MeanAccumulator {
 public:
  MeanAccumulator() = default;
  MeanAccumulator(int width, int height, int channels);
  void add(const Image& img);
  // Adds n images already summed into `partial` (uint32 per value, same layout).
  void add_sums(const std::vector<std::uint32_t>& partial, std::int64_t n);
  std::int64_t count() const { return count_; }
  int width() const { return width_; }
  int height() const { return height_; }
  int channels() const { return channels_; }
  const std::vector<std::uint64_t>& sums() const { return sums_; }
  void restore(std::vector<std::uint64_t> sums, std::int64_t count);
  // Rounded uint8 mean, HWC RGB (or gray).
  Image mean() const;

 private:
  int width_ = 0, height_ = 0, channels_ = 0;
  std::int64_t count_ = 0;
  std::vector<std::uint64_t> sums_;
};

// BlobProto: num=1, channels, height, width; data = mean in CHW BGR as floats.
std::string mean_blobproto(const Image& mean_rgb);
// Reads a mean.binaryproto back (legacy num/channels/height/width or shape dims).
struct MeanBlob {
  int channels = 0, height = 0, width = 0;
  std::vector<float> chw;  // CHW, BGR, as stored
};
MeanBlob read_mean_blobproto(const std::string& path);

}  // namespace incept::data

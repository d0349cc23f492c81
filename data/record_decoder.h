// Decoding of one LMDB record (a serialized caffe.Datum) straight into its place in a batch:
// the protobuf wire format is read in place (the pixel bytes stay a view into LMDB's map, no
// copy), JPEGs are decoded by libjpeg-turbo directly to BGR (or gray) rows of the
// destination, PNGs by libpng's simplified API likewise, raw Datums (CHW BGR) are transposed
// to HWC. Every record of a loader has one shape H x W x C (C 1 or 3); a record of another
// size is refused, an encoded one of other channels is converted (libjpeg/libpng do it), as
// DIGITS converts every image to the dataset's channels when it writes them.
//
// Records come from imagenet_ingest and DIGITS (channels, height, width set; encoded files
// hold RGB so decoding to BGR gives Caffe's order) and from Caffe's convert_imageset
// (encoded records leave channels/height/width 0: the file's header says).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace incept::data {

// The fields of a caffe.Datum, the bytes as a view into the serialized record.
struct DatumFields {
  int channels = 0, height = 0, width = 0;
  std::int32_t label = 0;
  bool encoded = false;
  const std::uint8_t* data = nullptr;
  std::size_t data_size = 0;
  std::size_t float_data = 0;  // float_data values present (unsupported for images)
};
// Parses the wire format of caffe.Datum (unknown fields skipped). False with *error set when
// the bytes are not a well-formed Datum.
bool parse_datum_fields(const std::uint8_t* p, std::size_t n, DatumFields* out, std::string* error);

struct RecordShape {
  int height = 0, width = 0, channels = 0;
  std::size_t bytes() const { return std::size_t(height) * width * channels; }
  bool operator==(const RecordShape&) const = default;
};

// One per thread: holds its libjpeg-turbo handle and scratch space, so decoding allocates
// nothing of its own per record (libpng still allocates its read structs).
class RecordDecoder {
 public:
  // accurate_jpeg: libjpeg's default islow DCT and fancy chroma upsampling, what OpenCV's
  // imdecode (hence Caffe) does; false: the fast integer DCT and plain upsampling (faster,
  // within a few levels of it).
  explicit RecordDecoder(bool accurate_jpeg = true);
  ~RecordDecoder();
  RecordDecoder(const RecordDecoder&) = delete;
  RecordDecoder& operator=(const RecordDecoder&) = delete;

  // The shape the record holds (for encoded records the Datum's channels, else the file's).
  // Throws ImageError for a record that is not a usable image.
  RecordShape probe(const std::uint8_t* value, std::size_t size);
  // Decodes the record into dst (shape.bytes() bytes, HWC, BGR or gray) and returns its
  // label. Throws ImageError when it is corrupt or of another size; dst is then undefined.
  std::int32_t decode(const std::uint8_t* value, std::size_t size, const RecordShape& shape,
                      std::uint8_t* dst);

 private:
  void decode_jpeg(const DatumFields& d, const RecordShape& shape, std::uint8_t* dst);
  void decode_png(const DatumFields& d, const RecordShape& shape, std::uint8_t* dst);
  void reset_jpeg();

  bool accurate_jpeg_;
  void* tj_ = nullptr;  // tjhandle
  std::vector<std::uint8_t> scratch_;
};

}  // namespace incept::data

// Image codecs, resize/fit modes, Datum records, the mean blob and the IDX reader, checked
// against OpenCV (an independent decoder/resizer) and against hand-computed values.
#include <gtest/gtest.h>
#include <turbojpeg.h>

#include <array>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "data/caffe.pb.h"
#include "data/datum.h"
#include "data/idx.h"
#include "data/image.h"
#include "data/record.h"
#include "data/resize.h"
#include "testing/test_util.h"

namespace incept::data {
namespace {

// A smooth "photographic" RGB test image: gradients plus low-amplitude noise.
Image test_image(int w, int h, std::uint64_t seed = 1) {
  Image img(w, h, 3);
  std::mt19937 rng{static_cast<unsigned>(seed)};
  std::uniform_int_distribution<int> noise(-6, 6);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      std::uint8_t* p = img.row(y) + 3 * x;
      p[0] = std::uint8_t(std::clamp(255 * x / w + noise(rng), 0, 255));
      p[1] = std::uint8_t(std::clamp(255 * y / h + noise(rng), 0, 255));
      p[2] = std::uint8_t(std::clamp(128 + int(100 * std::sin(x * 0.05 + y * 0.03)) + noise(rng), 0, 255));
    }
  return img;
}

cv::Mat to_bgr_mat(const Image& img) {
  cv::Mat m(img.height, img.width, img.channels == 3 ? CV_8UC3 : CV_8UC1,
            const_cast<std::uint8_t*>(img.pixels.data()));
  cv::Mat out;
  if (img.channels == 3)
    cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  else
    out = m.clone();
  return out;
}

double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  return cv::mean(d.reshape(1))[0];
}

cv::Mat decode_cv(const std::string& bytes) {
  return cv::imdecode(cv::Mat(1, int(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())),
                      cv::IMREAD_UNCHANGED);
}

TEST(DataImage, JpegRoundTripMatchesOpenCvDecode) {
  const Image src = test_image(320, 240);
  const std::string jpg = encode_jpeg(src, 90);
  const Image ours = decode_image(jpg);
  ASSERT_EQ(ours.width, 320);
  ASSERT_EQ(ours.height, 240);
  const cv::Mat cv_bgr = decode_cv(jpg);
  ASSERT_EQ(cv_bgr.channels(), 3);
  // Two decoders agree (ours skips fancy chroma upsampling: about one level apart).
  EXPECT_LT(mean_abs_diff(to_bgr_mat(ours), cv_bgr), 2.0);
  EXPECT_LT(mean_abs_diff(to_bgr_mat(ours), to_bgr_mat(src)), 4.0);  // q90 is close to the source
}

TEST(DataImage, ScaledJpegDecodeKeepsAtLeastTheRequestedSize) {
  const std::string jpg = encode_jpeg(test_image(1024, 768), 90);
  const Image half = decode_image(jpg, DecodeOptions{3, 64'000'000, 256, 256});
  EXPECT_EQ(half.width, 512);  // 1/2 gives 512x384; 1/4 would give 256x192, below 256
  EXPECT_EQ(half.height, 384);
  const Image quarter = decode_image(jpg, DecodeOptions{3, 64'000'000, 200, 150});
  EXPECT_EQ(quarter.width, 256);
  EXPECT_EQ(quarter.height, 192);
}

TEST(DataImage, PngBmpPpmDecode) {
  const Image src = test_image(37, 23);
  const Image png = decode_image(encode_png(src));
  EXPECT_EQ(png.pixels, src.pixels);  // lossless
  cv::Mat bgr = to_bgr_mat(src);
  std::vector<std::uint8_t> bmp, ppm;
  cv::imencode(".bmp", bgr, bmp);
  cv::imencode(".ppm", bgr, ppm);
  EXPECT_EQ(decode_image(bmp.data(), bmp.size()).pixels, src.pixels);
  EXPECT_EQ(decode_image(ppm.data(), ppm.size()).pixels, src.pixels);
  const Image gray = decode_image(encode_png(src), DecodeOptions{1});
  EXPECT_EQ(gray.channels, 1);
  cv::Mat cv_gray;
  cv::cvtColor(bgr, cv_gray, cv::COLOR_BGR2GRAY);
  EXPECT_LT(mean_abs_diff(to_bgr_mat(gray), cv_gray), 1.0);
}

TEST(DataImage, BadFilesAreRefusedWithAReason) {
  auto msg = [](const std::string& bytes, DecodeOptions o = {}) {
    try {
      decode_image(bytes, o);
    } catch (const ImageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("").find("empty"), std::string::npos);
  EXPECT_NE(msg("<html>not an image</html>").find("not an image"), std::string::npos);
  const std::string jpg = encode_jpeg(test_image(200, 150), 90);
  EXPECT_NE(msg(jpg.substr(0, jpg.size() / 2)).find("truncated"), std::string::npos);
  std::string corrupt = jpg;
  for (std::size_t i = 20; i < corrupt.size(); i += 7) corrupt[i] = char(i * 31);
  EXPECT_NE(msg(corrupt), "no error");
  EXPECT_NE(msg(jpg, DecodeOptions{3, 1000}).find("above the limit"), std::string::npos)
      << msg(jpg, DecodeOptions{3, 1000});
  // A PNG header claiming 100000 x 100000 is refused from the header alone.
  std::string png = encode_png(test_image(8, 8));
  png[16] = 0, png[17] = 1, png[18] = char(0x86), png[19] = char(0xA0);
  png[20] = 0, png[21] = 1, png[22] = char(0x86), png[23] = char(0xA0);
  EXPECT_NE(msg(png).find("above the limit"), std::string::npos);
  const std::string png_ok = encode_png(test_image(64, 64));
  EXPECT_NE(msg(png_ok.substr(0, png_ok.size() - 40)), "no error");
}

TEST(DataImage, BilinearResizeAgreesWithOpenCv) {
  const Image src = test_image(300, 200);
  // Upscaling and mild downscaling: the same filter as cv::INTER_LINEAR.
  for (auto [w, h] : {std::pair{450, 300}, std::pair{256, 180}}) {
    const Image ours = resize_bilinear(src, w, h);
    cv::Mat ref;
    cv::resize(to_bgr_mat(src), ref, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
    EXPECT_LT(mean_abs_diff(to_bgr_mat(ours), ref), 1.5) << w << "x" << h;
  }
  // Large reductions average (antialiased, like PIL); INTER_AREA is the closest OpenCV filter.
  const Image small = resize_bilinear(src, 75, 50);
  cv::Mat area;
  cv::resize(to_bgr_mat(src), area, cv::Size(75, 50), 0, 0, cv::INTER_AREA);
  EXPECT_LT(mean_abs_diff(to_bgr_mat(small), area), 2.0);
  // Flat stays exactly flat.
  Image flat(40, 30, 3);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 77);
  for (auto v : resize_bilinear(flat, 13, 61).pixels) ASSERT_EQ(v, 77);
}

TEST(DataImage, JpegResizedThroughYCbCrPlanesMatchesDecodeThenResize) {
  const Image src = test_image(500, 375, 9);
  const std::string jpg = encode_jpeg(src, 90);
  for (auto [w, h] : {std::pair{256, 256}, std::pair{341, 256}, std::pair{640, 480}, std::pair{100, 60}}) {
    const DecodeOptions opt{3, 64'000'000, w, h};
    const Image direct = resize_bilinear(decode_image(jpg, opt), w, h);
    const Image planes =
        decode_jpeg_resized(reinterpret_cast<const std::uint8_t*>(jpg.data()), jpg.size(), w, h, opt);
    ASSERT_EQ(planes.width, w);
    ASSERT_EQ(planes.height, h);
    ASSERT_EQ(planes.channels, 3);
    // As close to the resized original as decode-then-resize is (chroma is resized from its
    // own resolution instead of being upsampled and resized again).
    const cv::Mat truth = to_bgr_mat(resize_bilinear(src, w, h));
    const double err_planes = mean_abs_diff(to_bgr_mat(planes), truth);
    const double err_direct = mean_abs_diff(to_bgr_mat(direct), truth);
    EXPECT_LT(err_planes, err_direct + 0.5) << w << "x" << h;
    EXPECT_LT(mean_abs_diff(to_bgr_mat(planes), to_bgr_mat(direct)), 1.5) << w << "x" << h;
  }
  Image gray(300, 200, 1);
  for (std::size_t i = 0; i < gray.pixels.size(); ++i) gray.pixels[i] = std::uint8_t(i * 13 / 7);
  const std::string gjpg = encode_jpeg(gray, 90);
  const Image g =
      decode_jpeg_resized(reinterpret_cast<const std::uint8_t*>(gjpg.data()), gjpg.size(), 64, 64, {});
  EXPECT_EQ(g.channels, 3);
  EXPECT_LT(mean_abs_diff(to_bgr_mat(g), to_bgr_mat(resize_bilinear(decode_image(gjpg), 64, 64))), 1.0);
}

// A JPEG with any chroma subsampling, straight from libjpeg-turbo (encode_jpeg writes 4:2:0).
std::string encode_jpeg_sampled(const Image& rgb, int subsamp) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  EXPECT_EQ(
      tjCompress2(tj, rgb.pixels.data(), rgb.width, 0, rgb.height, TJPF_RGB, &buf, &len, subsamp, 90, 0), 0);
  std::string out(reinterpret_cast<const char*>(buf), len);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

struct Record {
  caffe::Datum datum;
  Image mean_pixels;  // RGB
};
Record record_of(const std::string& file, const RecordOptions& o, int label = 3) {
  Record r;
  std::string value;
  make_record(reinterpret_cast<const std::uint8_t*>(file.data()), file.size(), label, 11, o, &value,
              &r.mean_pixels);
  EXPECT_TRUE(r.datum.ParseFromString(value));
  EXPECT_EQ(r.datum.label(), label);
  EXPECT_EQ(r.datum.width(), o.width);
  EXPECT_EQ(r.datum.height(), o.height);
  EXPECT_EQ(r.datum.channels(), o.channels);
  return r;
}

TEST(DataImage, Jpeg420RecordsAreEncodedFromResizedPlanes) {
  const Image src = test_image(500, 375, 3);
  const std::string jpg = encode_jpeg(src, 90);
  const auto* data = reinterpret_cast<const std::uint8_t*>(jpg.data());
  ASSERT_TRUE(read_image_info(data, jpg.size()).ycc_420);
  const RecordOptions o;  // DIGITS defaults: 256x256 squash, RGB, JPEG q90
  const Record r = record_of(jpg, o);
  ASSERT_TRUE(r.datum.encoded());
  const cv::Mat rec = decode_cv(r.datum.data());  // what Caffe sees: BGR
  ASSERT_EQ(rec.type(), CV_8UC3);
  ASSERT_EQ(rec.cols, 256);
  ASSERT_EQ(rec.rows, 256);
  // The general path: decode to RGB, resize, encode from RGB. Same picture within a level,
  // and as close to the resized original.
  const Image general = resize_bilinear(decode_image(jpg), 256, 256);
  const cv::Mat general_rec = decode_cv(encode_jpeg(general, 90));
  EXPECT_LT(mean_abs_diff(rec, general_rec), 1.5);
  const cv::Mat truth = to_bgr_mat(resize_bilinear(src, 256, 256));
  EXPECT_LT(mean_abs_diff(rec, truth), mean_abs_diff(general_rec, truth) + 0.5);
  // The mean's pixels are the record's before compression: the decoded record within the
  // JPEG loss, and without bias (the per-channel averages agree).
  ASSERT_EQ(r.mean_pixels.width, 256);
  ASSERT_EQ(r.mean_pixels.height, 256);
  ASSERT_EQ(r.mean_pixels.channels, 3);
  const cv::Mat mean_bgr = to_bgr_mat(r.mean_pixels);
  EXPECT_LT(mean_abs_diff(mean_bgr, rec), 2.5);
  EXPECT_LT(mean_abs_diff(mean_bgr, to_bgr_mat(general)), 2.0);
  const cv::Scalar a = cv::mean(mean_bgr), b = cv::mean(rec);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(a[c], b[c], 0.25) << "channel " << c;
  // Validation records (no mean pixels wanted) are the same bytes.
  std::string value, val_value;
  make_record(data, jpg.size(), 3, 11, o, &value, nullptr);
  r.datum.SerializeToString(&val_value);
  EXPECT_EQ(value, val_value);
}

TEST(DataImage, Ycbcr420ToRgbIsBitExactWithLibjpegDecode) {
  for (auto [w, h] : {std::pair{256, 256}, std::pair{254, 130}, std::pair{2, 2}, std::pair{500, 376}}) {
    const std::string jpg = encode_jpeg(test_image(w, h, 4), 90);
    tjhandle tj = tjInitDecompress();
    Image y(w, h, 1), cb((w + 1) / 2, (h + 1) / 2, 1), cr((w + 1) / 2, (h + 1) / 2, 1), rgb(w, h, 3);
    unsigned char* planes[3] = {y.pixels.data(), cb.pixels.data(), cr.pixels.data()};
    const auto* data = reinterpret_cast<const unsigned char*>(jpg.data());
    ASSERT_EQ(tjDecompressToYUVPlanes(tj, data, jpg.size(), planes, w, nullptr, h, 0), 0);
    ASSERT_EQ(tjDecompress2(tj, data, jpg.size(), rgb.pixels.data(), w, 0, h, TJPF_RGB, 0), 0);
    tjDestroy(tj);
    Image ours;
    ycbcr420_to_rgb(y, cb, cr, &ours);
    ASSERT_EQ(ours.width, w);
    ASSERT_EQ(ours.channels, 3);
    EXPECT_EQ(ours.pixels, rgb.pixels) << w << "x" << h;
  }
}

TEST(DataImage, Jpeg420RecordsOfOddSizesAndScaledDecodes) {
  // Odd record sizes (the general path), odd source sizes (Y cropped from libjpeg-turbo's
  // padded plane), a source large enough for a 1/2-scale DCT decode, and an enlargement.
  for (auto [sw, sh, w, h] : {std::array{500, 375, 255, 129}, std::array{1024, 768, 256, 256},
                              std::array{333, 500, 227, 227}, std::array{100, 80, 256, 256}}) {
    const Image src = test_image(sw, sh, 5);
    RecordOptions o;
    o.width = w, o.height = h;
    const Record r = record_of(encode_jpeg(src, 90), o);
    const cv::Mat rec = decode_cv(r.datum.data());
    ASSERT_EQ(rec.cols, w);
    ASSERT_EQ(rec.rows, h);
    EXPECT_LT(mean_abs_diff(rec, to_bgr_mat(resize_bilinear(src, w, h))), 3.0) << sw << "x" << sh;
    // The mean's pixels are the record before compression: as close as JPEG q90 keeps any image.
    const Image general = resize_bilinear(src, w, h);
    const double q90_loss = mean_abs_diff(decode_cv(encode_jpeg(general, 90)), to_bgr_mat(general));
    EXPECT_LT(mean_abs_diff(to_bgr_mat(r.mean_pixels), rec), q90_loss + 0.5) << sw << "x" << sh;
  }
}

TEST(DataImage, RecordsOfOtherSourcesAndOptionsMatchDecodeThenFit) {
  const Image src = test_image(500, 375, 8);
  const std::string png = encode_png(src);
  struct Case {
    std::string what, file;
    int channels;
    ResizeMode mode;
    Encoding encoding;
  };
  const std::vector<Case> cases = {
      {"4:4:4 JPEG", encode_jpeg_sampled(src, TJSAMP_444), 3, ResizeMode::kSquash, Encoding::kJpeg},
      {"4:2:2 JPEG", encode_jpeg_sampled(src, TJSAMP_422), 3, ResizeMode::kSquash, Encoding::kJpeg},
      {"gray JPEG", encode_jpeg(to_channels(src, 1)), 3, ResizeMode::kSquash, Encoding::kJpeg},
      {"4:2:0 JPEG, crop", encode_jpeg(src), 3, ResizeMode::kCrop, Encoding::kJpeg},
      {"4:2:0 JPEG, fill", encode_jpeg(src), 3, ResizeMode::kFill, Encoding::kPng},
      {"4:2:0 JPEG, half_crop", encode_jpeg(src), 3, ResizeMode::kHalfCrop, Encoding::kNone},
      {"4:2:0 JPEG, PNG records", encode_jpeg(src), 3, ResizeMode::kSquash, Encoding::kPng},
      {"4:2:0 JPEG, raw records", encode_jpeg(src), 3, ResizeMode::kSquash, Encoding::kNone},
      {"4:2:0 JPEG, gray records", encode_jpeg(src), 1, ResizeMode::kSquash, Encoding::kJpeg},
      {"PNG", png, 3, ResizeMode::kSquash, Encoding::kJpeg},
  };
  for (const Case& c : cases) {
    RecordOptions o;
    o.channels = c.channels, o.resize = c.mode, o.encoding = c.encoding;
    const Record r = record_of(c.file, o);
    const Image expected =
        fit_image(decode_image(c.file, DecodeOptions{c.channels}), 256, 256, c.mode, 11);  // RGB or gray
    Image got = decode_datum(r.datum.SerializeAsString()).bgr;
    ASSERT_EQ(got.channels, c.channels) << c.what;
    if (got.channels == 3)  // back to RGB, as to_bgr_mat expects
      for (std::size_t i = 0; i < got.pixels.size(); i += 3) std::swap(got.pixels[i], got.pixels[i + 2]);
    EXPECT_LT(mean_abs_diff(to_bgr_mat(got), to_bgr_mat(expected)), c.encoding == Encoding::kJpeg ? 2.5 : 2.0)
        << c.what;
    EXPECT_LT(mean_abs_diff(to_bgr_mat(r.mean_pixels), to_bgr_mat(expected)), 2.0) << c.what;
  }
}

TEST(DataImage, FitModesFollowDigits) {
  const Image src = test_image(400, 200);  // 2:1
  EXPECT_EQ(resize_extent(400, 200, 256, 256, ResizeMode::kSquash).width, 256);
  const Extent crop = resize_extent(400, 200, 256, 256, ResizeMode::kCrop);
  EXPECT_EQ(crop.width, 512);
  EXPECT_EQ(crop.height, 256);
  const Extent fill = resize_extent(400, 200, 256, 256, ResizeMode::kFill);
  EXPECT_EQ(fill.width, 256);
  EXPECT_EQ(fill.height, 128);
  const Extent half = resize_extent(400, 200, 256, 256, ResizeMode::kHalfCrop);  // ratio (1.5625+0.78125)/2
  EXPECT_EQ(half.width, 341);
  EXPECT_EQ(half.height, 172);  // 171, made even against 256 as DIGITS does
  for (auto mode : {ResizeMode::kSquash, ResizeMode::kCrop, ResizeMode::kFill, ResizeMode::kHalfCrop}) {
    const Image out = fit_image(src, 256, 256, mode, 7);
    EXPECT_EQ(out.width, 256);
    EXPECT_EQ(out.height, 256);
    EXPECT_EQ(fit_image(src, 256, 256, mode, 7).pixels, out.pixels) << "seeded noise is reproducible";
  }
  // crop keeps the centre: the centre column of the crop equals the centre of the resized image.
  const Image crop_img = fit_image(src, 256, 256, ResizeMode::kCrop, 0);
  const Image resized = resize_bilinear(src, 512, 256);
  EXPECT_EQ(crop_img.row(100)[3 * 0], resized.row(100)[3 * 128]);
  EXPECT_THROW(parse_resize_mode("stretch"), Error);
}

TEST(DataImage, DatumRecordsAreCaffeShaped) {
  Image red(4, 3, 3);
  for (std::size_t i = 0; i < red.pixels.size(); i += 3) red.pixels[i] = 255;  // RGB red
  // Raw: CHW BGR, so channel 2 (R) is 255 and channels 0, 1 are 0.
  caffe::Datum d;
  ASSERT_TRUE(d.ParseFromString(make_datum(red, 5, Encoding::kNone)));
  EXPECT_EQ(d.channels(), 3);
  EXPECT_EQ(d.height(), 3);
  EXPECT_EQ(d.width(), 4);
  EXPECT_EQ(d.label(), 5);
  EXPECT_FALSE(d.encoded());
  ASSERT_EQ(d.data().size(), 36u);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(std::uint8_t(d.data()[i]), 0);
    EXPECT_EQ(std::uint8_t(d.data()[24 + i]), 255);
  }
  // Encoded: an RGB PNG file; OpenCV decodes it to BGR (255 in channel 2).
  ASSERT_TRUE(d.ParseFromString(make_datum(red, 1, Encoding::kPng)));
  EXPECT_TRUE(d.encoded());
  const cv::Mat m = decode_cv(d.data());
  EXPECT_EQ(m.at<cv::Vec3b>(1, 1), cv::Vec3b(0, 0, 255));
  const DatumImage back = decode_datum(make_datum(red, 2, Encoding::kNone));
  EXPECT_EQ(back.bgr.row(0)[2], 255);
  EXPECT_EQ(back.label, 2);
  EXPECT_EQ(datum_key(42, 7), "00000042_7");
  std::int64_t idx;
  int label;
  ASSERT_TRUE(parse_datum_key("00001234_999", &idx, &label));
  EXPECT_EQ(idx, 1234);
  EXPECT_EQ(label, 999);
}

TEST(DataImage, MeanBlobIsLegacyChwBgr) {
  MeanAccumulator acc(2, 1, 3);
  Image a(2, 1, 3), b(2, 1, 3);
  a.pixels = {10, 20, 30, 0, 0, 0};
  b.pixels = {11, 20, 31, 255, 255, 254};
  acc.add(a);
  acc.add(b);
  const Image m = acc.mean();
  EXPECT_EQ(m.pixels, (std::vector<std::uint8_t>{10, 20, 30, 128, 128, 127}));  // round half to even
  caffe::BlobProto blob;
  ASSERT_TRUE(blob.ParseFromString(mean_blobproto(m)));
  EXPECT_EQ(blob.num(), 1);
  EXPECT_EQ(blob.channels(), 3);
  EXPECT_EQ(blob.height(), 1);
  EXPECT_EQ(blob.width(), 2);
  EXPECT_FALSE(blob.has_shape());
  ASSERT_EQ(blob.data_size(), 6);
  EXPECT_EQ(blob.data(0), 30);  // B plane first
  EXPECT_EQ(blob.data(1), 127);
  EXPECT_EQ(blob.data(4), 10);  // R plane last
}

TEST(DataImage, FashionMnistIdx) {
  const std::string dir = fashion_mnist_dir();
  if (!std::ifstream(dir + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const IdxArray images = read_idx(dir + "/t10k-images-idx3-ubyte.gz");
  const IdxArray labels = read_idx(dir + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(images.dims, (std::vector<int>{10000, 28, 28}));
  ASSERT_EQ(labels.dims, (std::vector<int>{10000}));
  EXPECT_EQ(labels.values[0], 9);  // the first test image is an ankle boot
  const Image img = idx_image(images, 0);
  EXPECT_EQ(img.width, 28);
  EXPECT_EQ(img.channels, 1);
  testing::TempDir tmp("fmnist");
  EXPECT_EQ(write_fashion_mnist_folder(tmp.path().string(), 3, "t10k"), 30);
  const cv::Mat png = cv::imread((tmp / "Ankle_boot" / "0.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(png.empty());
  EXPECT_EQ(std::memcmp(png.data, img.pixels.data(), 28 * 28), 0);
}

}  // namespace
}  // namespace incept::data

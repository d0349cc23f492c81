// Image codecs, resize/fit modes, Datum records, the mean blob and the IDX reader, checked
// against OpenCV (an independent decoder/resizer) and against hand-computed values.
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "data/caffe.pb.h"
#include "data/datum.h"
#include "data/idx.h"
#include "data/image.h"
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

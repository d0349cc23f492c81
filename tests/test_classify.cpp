// classify (engine/classifier.h, data/preprocess.h, tools/classify): DIGITS' preprocessing
// pixel by pixel; the tool on real Fashion-MNIST images (PNG, JPEG, over HTTP) through an
// exported GoogLeNet archive, printing the top-k format, with probabilities equal to OpenCV
// dnn's for the same preprocessed input; batches, job folders and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <opencv2/dnn.hpp>
#include <regex>
#include <sstream>

#include "data/idx.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "engine/check.h"
#include "engine/classifier.h"
#include "engine/model_archive.h"
#include "models/models.h"
#include "testing/http_server.h"
#include "testing/job_fixture.h"
#include "testing/test_util.h"

namespace incept {
namespace {

namespace fs = std::filesystem;

std::string tool(const std::string& args, int* rc) {
  std::string out;
  *rc = testing::run_command(testing::program_command(args) + " 2>&1", &out);
  return out;
}

TEST(Preprocess, CentreCropBgrMeanWindowAndScale) {
  // A 6x4 RGB image at the record size: fitting is the identity, so every output value can be
  // computed by hand.
  data::Image img(6, 4, 3);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = std::uint8_t(i * 7 % 251);
  data::InputTransform t;
  t.record_width = 6, t.record_height = 4, t.input_width = 4, t.input_height = 2;
  t.mean = data::MeanMode::kImage;
  t.mean_image.channels = 3, t.mean_image.height = 4, t.mean_image.width = 6;
  for (int i = 0; i < 72; ++i) t.mean_image.chw.push_back(float(i % 13));
  t.scale = 0.5f;
  data::validate_transform(t);
  std::vector<float> out(3 * 2 * 4);
  data::preprocess_image(img, t, out.data());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 4; ++x) {
        const int sy = y + 1, sx = x + 1;  // centre crop offsets (4-2)/2, (6-4)/2
        const float pixel = img.pixels[(sy * 6 + sx) * 3 + (2 - c)];
        const float mean = t.mean_image.chw[(c * 4 + sy) * 6 + sx];
        EXPECT_EQ(out[(c * 2 + y) * 4 + x], (pixel - mean) * 0.5f) << c << " " << y << " " << x;
      }
  // Per-channel mean, grey input replicated to 3 channels.
  t.mean = data::MeanMode::kPixel;
  t.mean_pixel = {10.f, 20.f, 30.f};
  t.scale = 1.f;
  data::Image grey(6, 4, 1);
  std::fill(grey.pixels.begin(), grey.pixels.end(), std::uint8_t(100));
  data::preprocess_image(grey, t, out.data());
  EXPECT_EQ(out[0], 90.f);
  EXPECT_EQ(out[8], 80.f);
  EXPECT_EQ(out[16], 70.f);
  // Transforms that cannot work.
  t.input_width = 8;
  EXPECT_THROW(data::validate_transform(t), Error);
  t.input_width = 4;
  t.mean_pixel = {1.f};
  EXPECT_THROW(data::validate_transform(t), Error);
}

class ClassifyTool : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    job_ = new testing::JobFixture("googlenet", {10, 20});
    archive_ = job_->dir / "model.tar.gz";
    write_model_archive(archive_, export_model(read_job(job_->dir.path()), models::googlenet(), {}));
    // Real images: Fashion-MNIST test pictures as a grey PNG, an RGB PNG and a JPEG.
    images_ = {job_->dir / "coat.png", job_->dir / "shirt_rgb.png", job_->dir / "boot.jpg"};
    std::ofstream(images_[0], std::ios::binary) << data::encode_png(testing::fashion_image(0));
    std::ofstream(images_[1], std::ios::binary)
        << data::encode_png(data::to_channels(testing::fashion_image(1), 3));
    std::ofstream(images_[2], std::ios::binary)
        << data::encode_jpeg(data::to_channels(testing::fashion_image(2), 3), 95);
  }
  static void TearDownTestSuite() { delete job_; }
  static std::vector<data::Image> decoded() {
    std::vector<data::Image> out;
    for (const fs::path& p : images_) {
      std::ifstream f(p, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      out.push_back(data::decode_image(bytes));
    }
    return out;
  }
  static std::string image_args() {
    std::string s;
    for (const fs::path& p : images_) s += " " + p.string();
    return s;
  }

  static testing::JobFixture* job_;
  static fs::path archive_;
  static std::vector<fs::path> images_;
};
testing::JobFixture* ClassifyTool::job_ = nullptr;
fs::path ClassifyTool::archive_;
std::vector<fs::path> ClassifyTool::images_;

TEST_F(ClassifyTool, ProbabilitiesEqualOpenCvForTheSamePreprocessing) {
  const ModelFiles files = read_model_archive(archive_);
  Classifier c(files, 3);
  EXPECT_EQ(c.num_classes(), 10);
  EXPECT_EQ(c.output_blob(), "softmax");
  EXPECT_EQ(c.transform().record_width, 256);
  EXPECT_EQ(c.transform().input_width, 224);
  EXPECT_EQ(c.transform().mean, data::MeanMode::kImage);
  const std::vector<data::Image> imgs = decoded();
  const auto ours = c.classify(imgs);

  std::vector<float> x(3 * 3 * 224 * 224);
  for (int i = 0; i < 3; ++i) data::preprocess_image(imgs[i], c.transform(), x.data() + i * 3 * 224 * 224);
  const fs::path dir = job_->dir / "opencv";
  fs::create_directories(dir);
  std::ofstream(dir / "deploy.prototxt") << files.deploy_prototxt;
  std::ofstream(dir / "model.caffemodel", std::ios::binary) << files.caffemodel;
  cv::dnn::Net net =
      cv::dnn::readNetFromCaffe((dir / "deploy.prototxt").string(), (dir / "model.caffemodel").string());
  const int shape[4] = {3, 3, 224, 224};
  net.setInput(cv::Mat(4, shape, CV_32F, x.data()));
  const cv::Mat prob = net.forward("softmax");
  double diff = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 10; ++k) {
      diff = std::max(diff, double(std::abs(ours[i][k] - prob.ptr<float>()[i * 10 + k])));
      lo = std::min(lo, ours[i][k]), hi = std::max(hi, ours[i][k]);
    }
  std::printf("classify vs OpenCV: max |diff| %.3g, probabilities in [%.4f, %.4f]\n", diff, lo, hi);
  EXPECT_LT(diff, 1e-5);
  EXPECT_GT(hi - lo, 0.05f);
  EXPECT_LT(hi, 0.99f) << "a saturated softmax would make the comparison meaningless";
  // A batch of 2 for 3 images (one full, one short) gives the same numbers.
  Classifier c2(files, 2);
  const auto batched = c2.classify(imgs);
  for (int i = 0; i < 3; ++i) EXPECT_LT(testing::max_abs_diff(batched[i], ours[i]), 1e-6) << i;
}

TEST_F(ClassifyTool, PrintsTopKPerImage) {
  int rc = 0;
  const std::string out = tool("classify --model " + archive_.string() + " --top 3" + image_args(), &rc);
  ASSERT_EQ(rc, 0) << out;
  const auto probs = Classifier(read_model_archive(archive_), 3).classify(decoded());
  const std::regex line(R"(  ([0-9])\.\s+([0-9.]+)%  (\S+))");
  std::istringstream in(out);
  std::string l;
  std::getline(in, l);
  EXPECT_NE(l.find("snapshot_iter_20.caffemodel"), std::string::npos) << l;
  for (int i = 0; i < 3; ++i) {
    std::getline(in, l);
    EXPECT_EQ(l, images_[i].string());
    const auto best = top_k(probs[i], 3, data::fashion_mnist_class_names());
    for (int r = 0; r < 3; ++r) {
      std::getline(in, l);
      std::smatch m;
      ASSERT_TRUE(std::regex_match(l, m, line)) << "'" << l << "' in\n" << out;
      EXPECT_EQ(m[1].str(), std::to_string(r + 1));
      EXPECT_NEAR(std::stod(m[2].str()), 100.0 * best[r].probability, 1e-3);
      EXPECT_EQ(m[3].str(), best[r].label);
    }
  }
}

TEST_F(ClassifyTool, UrlsJobFoldersAndErrors) {
  int rc = 0;
  const std::string file_out = tool("classify --model " + archive_.string() + " " + images_[2].string(), &rc);
  ASSERT_EQ(rc, 0) << file_out;
  // The same image over HTTP: the same lines after the name.
  testing::HttpServer server = testing::HttpServer::python(job_->dir.path());
  const std::string url = server.url("/boot.jpg");
  const std::string url_out = tool("classify --model " + archive_.string() + " " + url, &rc);
  ASSERT_EQ(rc, 0) << url_out;
  EXPECT_EQ(url_out.substr(url_out.find(url) + url.size()), file_out.substr(file_out.find("boot.jpg") + 8));
  // A job folder and one of its snapshots.
  const std::string job_out =
      tool("classify --model " + job_->dir.path().string() + " --snapshot 10 " + images_[2].string(), &rc);
  ASSERT_EQ(rc, 0) << job_out;
  EXPECT_NE(job_out.find("snapshot_iter_10.caffemodel"), std::string::npos) << job_out;

  std::string err = tool("classify --model " + archive_.string() + " --gpus 0 " + images_[0].string(), &rc);
  EXPECT_EQ(rc, 1) << err;
  EXPECT_NE(err.find("--gpus none"), std::string::npos) << err;  // no GPU here: says how to run on the CPU
  err = tool("classify --model " + archive_.string() + " /nonexistent.png", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("/nonexistent.png: cannot open the image"), std::string::npos) << err;
  err = tool("classify --model " + archive_.string() + " " + (job_->dir / "job.json").string(), &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("job.json: "), std::string::npos) << err;
  err = tool("classify --model " + archive_.string() + " " + server.url("/missing.png"), &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("missing.png: HTTP 404"), std::string::npos) << err;
  err = tool("classify --model " + (job_->dir / "job.json").string() + " " + images_[0].string(), &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("not a readable model archive"), std::string::npos) << err;
}

}  // namespace
}  // namespace incept

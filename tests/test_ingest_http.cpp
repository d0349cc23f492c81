// imagenet_ingest end to end against real HTTP servers started here on 127.0.0.1 (Python's
// http.server and nginx autoindex), with real images (Fashion-MNIST) plus pure-red images in
// every supported format. What was written is checked with independent tools: mdb_stat,
// mdb_dump + protoc --decode, and OpenCV decoding the stored images (BGR order).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "data/caffe.pb.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image.h"
#include "data/ingest.h"
#include "data/lmdb_reader.h"
#include "testing/http_server.h"
#include "testing/test_util.h"

namespace incept::data {
namespace {
namespace fs = std::filesystem;
using testing::HttpServer;

// Fashion-MNIST (per_class per class) + class "zz_red" with 4 pure-red images in four formats,
// one of them two folders deep.
void make_tree(const fs::path& dir, int per_class) {
  write_fashion_mnist_folder(dir.string(), per_class, "t10k");
  Image red(120, 90, 3);
  for (std::size_t i = 0; i < red.pixels.size(); i += 3) red.pixels[i] = 255;
  fs::create_directories(dir / "zz_red" / "deeper" / "still");
  std::ofstream(dir / "zz_red" / "a.png", std::ios::binary) << encode_png(red);
  std::ofstream(dir / "zz_red" / "b.JPG", std::ios::binary) << encode_jpeg(red, 95);
  cv::Mat bgr(90, 120, CV_8UC3, cv::Scalar(0, 0, 255));
  cv::imwrite((dir / "zz_red" / "c.bmp").string(), bgr);
  cv::imwrite((dir / "zz_red" / "deeper" / "still" / "d.ppm").string(), bgr);
  std::ofstream(dir / "zz_red" / "notes.txt") << "not an image, ignored";
}

IngestOptions small_options(const std::string& source, const fs::path& out) {
  IngestOptions o;
  o.source = source;
  o.output_dir = out.string();
  o.width = o.height = 64;
  o.plan.seed = 3;
  o.progress_interval_s = 60;
  return o;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

// Checks every record of an LMDB with independent readers; returns the count per label.
std::map<int, int> check_db(const fs::path& db, int w, int h, int c, bool encoded, int red_label) {
  const auto records = testing::mdb_dump_records(db);
  EXPECT_EQ(long(records.size()), testing::mdb_stat_entries(db));
  std::map<int, int> per_label;
  std::string last_key;
  for (const auto& [key, value] : records) {
    EXPECT_LT(last_key, key);
    last_key = key;
    caffe::Datum d;
    EXPECT_TRUE(d.ParseFromString(value)) << key;
    EXPECT_EQ(key.substr(9), std::to_string(d.label())) << "key is %08d_<label>";
    EXPECT_EQ(d.channels(), c);
    EXPECT_EQ(d.height(), h);
    EXPECT_EQ(d.width(), w);
    EXPECT_EQ(d.encoded(), encoded);
    ++per_label[d.label()];
    cv::Mat img;
    if (encoded) {
      img = cv::imdecode(cv::Mat(1, int(d.data().size()), CV_8UC1, const_cast<char*>(d.data().data())),
                         cv::IMREAD_COLOR);
    } else {
      EXPECT_EQ(d.data().size(), std::size_t(w) * h * c);
      if (c == 3) {  // CHW BGR -> HWC BGR
        std::vector<cv::Mat> planes;
        for (int k = 0; k < 3; ++k)
          planes.emplace_back(h, w, CV_8UC1, const_cast<char*>(d.data().data()) + k * w * h);
        cv::merge(planes, img);
      }
    }
    if (c == 3) {
      EXPECT_EQ(img.cols, w);
      EXPECT_EQ(img.rows, h);
      if (d.label() == red_label) {
        const cv::Vec3b px = img.at<cv::Vec3b>(h / 2, w / 2);
        EXPECT_LE(px[0], 8) << "blue";
        EXPECT_LE(px[1], 8) << "green";
        EXPECT_GE(px[2], 245) << "red is the third (BGR) channel";
      }
    }
  }
  return per_label;
}

TEST(IngestHttp, PythonHttpServerDefaultsJpegSquash) {
  testing::TempDir tmp("ingest_py");
  make_tree(tmp / "src", 12);
  HttpServer server = HttpServer::python(tmp / "src");
  IngestOptions o = small_options(server.url("/"), tmp / "out");
  const IngestReport r = run_ingest(o);
  EXPECT_FALSE(r.interrupted);
  // 10 classes x 12 -> 9 train + 3 val each; zz_red: 4 -> 3 + 1.
  EXPECT_EQ(r.train_records, 93);
  EXPECT_EQ(r.val_records, 31);
  EXPECT_EQ(r.failures, 0);

  std::ifstream lf(tmp / "out" / "labels.txt");
  std::vector<std::string> labels;
  for (std::string l; std::getline(lf, l);) labels.push_back(l);
  ASSERT_EQ(labels.size(), 11u);
  EXPECT_EQ(labels[0], "Ankle boot");
  EXPECT_EQ(labels[8], "T-shirt top");
  EXPECT_EQ(labels[10], "zz red");

  const auto train = check_db(tmp / "out" / "train_db", 64, 64, 3, true, 10);
  const auto val = check_db(tmp / "out" / "val_db", 64, 64, 3, true, 10);
  EXPECT_EQ(train.at(10), 3);
  EXPECT_EQ(val.at(10), 1);
  EXPECT_EQ(train.at(0), 9);

  // protoc, knowing nothing of our code but the schema, reads a record.
  const auto first = testing::mdb_dump_records(tmp / "out" / "train_db").at(0);
  const std::string text = testing::protoc_decode_datum(first.second);
  EXPECT_NE(text.find("channels: 3"), std::string::npos) << text.substr(0, 200);
  EXPECT_NE(text.find("height: 64"), std::string::npos);
  EXPECT_NE(text.find("encoded: true"), std::string::npos);
  EXPECT_EQ(first.first.substr(0, 9), "00000000_");

  // train.txt lines are "<url> <label>" in key order.
  std::ifstream tf(tmp / "out" / "train.txt");
  std::string line;
  std::getline(tf, line);
  EXPECT_EQ(line.substr(line.rfind(' ') + 1), first.first.substr(9));
  EXPECT_EQ(line.rfind(server.url("/"), 0), 0u);

  // Mean: legacy dims, CHW BGR; the reader side agrees with the files.
  caffe::BlobProto blob;
  std::ifstream mf(tmp / "out" / "mean.binaryproto", std::ios::binary);
  ASSERT_TRUE(blob.ParseFromIstream(&mf));
  EXPECT_EQ(blob.num(), 1);
  EXPECT_EQ(blob.channels(), 3);
  EXPECT_EQ(blob.height(), 64);
  EXPECT_EQ(blob.data_size(), 3 * 64 * 64);
  EXPECT_FALSE(cv::imread((tmp / "out" / "mean.jpg").string()).empty());
  const DatasetInfo info = open_dataset((tmp / "out").string());
  EXPECT_EQ(info.labels.size(), 11u);
  EXPECT_EQ(info.train_count, 93);
  EXPECT_EQ(info.val_count, 31);
  EXPECT_EQ(info.width, 64);
  EXPECT_TRUE(info.encoded);
  EXPECT_EQ(info.mean.chw.size(), 3u * 64 * 64);

  const auto j = read_json(tmp / "out" / "dataset.json");
  EXPECT_EQ(j["counts"]["train"], 93);
  EXPECT_EQ(j["classes"][10]["name"], "zz red");
  EXPECT_EQ(j["classes"][10]["train"], 3);
  EXPECT_EQ(j["options"]["encoding"], "jpg");
  EXPECT_EQ(j["options"]["resize_mode"], "squash");
  EXPECT_EQ(j["failures"]["total"], 0);
}

TEST(IngestHttp, NginxAutoindexPngCropAndRawGray) {
  if (!testing::have_nginx()) GTEST_SKIP() << "nginx not installed (apt-get install nginx-light)";
  testing::TempDir tmp("ingest_nginx");
  make_tree(tmp / "src" / "imagenet" / "train", 6);
  HttpServer server = HttpServer::nginx(tmp / "src");
  IngestOptions o = small_options(server.url("/imagenet/train"), tmp / "png");  // no trailing '/': redirect
  o.encoding = Encoding::kPng;
  o.resize = ResizeMode::kCrop;
  o.width = 48, o.height = 40;
  const IngestReport r = run_ingest(o);
  EXPECT_EQ(r.train_records + r.val_records, 64);
  EXPECT_EQ(r.failures, 0);
  check_db(tmp / "png" / "train_db", 48, 40, 3, true, 10);

  IngestOptions g = small_options(server.url("/imagenet/train/"), tmp / "gray");
  g.encoding = Encoding::kNone;
  g.channels = 1;
  g.resize = ResizeMode::kFill;
  g.plan.pct_val = 0;
  const IngestReport rg = run_ingest(g);
  EXPECT_EQ(rg.train_records, 64);
  EXPECT_EQ(rg.val_records, 0);
  EXPECT_FALSE(fs::exists(tmp / "gray" / "val_db" / "data.mdb"));
  check_db(tmp / "gray" / "train_db", 64, 64, 1, false, -1);
  // Our reader gives the same pixels as the raw bytes.
  LmdbReader reader((tmp / "gray" / "train_db").string());
  DatumImage d;
  ASSERT_TRUE(reader.next(&d));
  EXPECT_EQ(d.bgr.channels, 1);
  EXPECT_FALSE(d.encoded);
}

TEST(IngestHttp, LocalFolderWithSeparateValidationAndTextFile) {
  testing::TempDir tmp("ingest_local");
  make_tree(tmp / "train", 5);
  fs::create_directories(tmp / "val");
  write_fashion_mnist_folder((tmp / "val").string(), 2, "train");
  fs::create_directories(tmp / "val" / "Unknown_class");
  fs::copy_file(tmp / "train" / "zz_red" / "a.png", tmp / "val" / "Unknown_class" / "a.png");
  IngestOptions o = small_options((tmp / "train").string(), tmp / "out");
  o.val_source = (tmp / "val").string();
  o.plan.max_per_class = 4;
  const IngestReport r = run_ingest(o);
  EXPECT_EQ(r.train_records, 44);  // 11 classes, at most 4 each, all for training
  EXPECT_EQ(r.val_records, 20);    // 10 known classes x 2; Unknown_class skipped
  const auto j = read_json(tmp / "out" / "dataset.json");
  EXPECT_NE(j["failures"]["items"].dump().find("Unknown_class"), std::string::npos);

  // A "path label" text file (paths relative to the file) plus a labels file.
  std::ofstream(tmp / "list.txt") << "train/Bag/"
                                  << fs::directory_iterator(tmp / "train" / "Bag")->path().filename().string()
                                  << " 1\ntrain/zz_red/a.png 0\ntrain/zz_red/b.JPG 0\n"
                                  << (tmp / "train" / "zz_red" / "c.bmp").string() << " 0\n";
  for (const auto& e : fs::directory_iterator(tmp / "train" / "Coat"))
    std::ofstream(tmp / "list.txt", std::ios::app) << e.path().string() << " 1\n";
  std::ofstream(tmp / "labels.txt") << "red\nclothes\n";
  IngestOptions t = small_options((tmp / "list.txt").string(), tmp / "txt");
  t.labels_file = (tmp / "labels.txt").string();
  const IngestReport rt = run_ingest(t);
  EXPECT_EQ(rt.train_records + rt.val_records, 9);
  std::ifstream lf(tmp / "txt" / "labels.txt");
  std::string first;
  std::getline(lf, first);
  EXPECT_EQ(first, "red");
  check_db(tmp / "txt" / "train_db", 64, 64, 3, true, 0);
}

TEST(IngestHttp, ToolHelpAndRefusesNonEmptyOutput) {
  const std::string tool = testing::test_program("imagenet_ingest");
  std::string help;
  ASSERT_EQ(testing::run_command(tool + " --help", &help), 0);
  for (const char* opt :
       {"--resize", "--encoding", "--pct-val", "--downloads", "--per-host", "--resume", "--stall-timeout",
        "--max-pixels", "--min-per-class", "--max-per-class", "--val-source"})
    EXPECT_NE(help.find(opt), std::string::npos) << opt;
  EXPECT_NE(help.find("squash"), std::string::npos);
  EXPECT_NE(help.find("256"), std::string::npos);
  testing::TempDir tmp("ingest_cli");
  make_tree(tmp / "src", 3);
  std::ofstream(tmp / "taken.txt") << "x";
  std::string out;
  EXPECT_EQ(testing::run_command(tool + " " + (tmp / "src").string() + " " + tmp.path().string(), &out), 1);
  EXPECT_NE(out.find("not empty"), std::string::npos) << out;
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  EXPECT_EQ(testing::run_command(
                tool + " http://127.0.0.1:1/nothing/ " + (tmp / "o").string() + " --connect-timeout 2", &out),
            1);
  EXPECT_NE(out.find("http://127.0.0.1:1/nothing/"), std::string::npos) << out;
  // Out-of-range limits are refused by name before anything is fetched or written.
  for (const auto& [flags, says] : std::vector<std::pair<std::string, std::string>>{
           {"--timeout 0", "--timeout: must be above 0; got 0"},
           {"--max-download-mb -1", "--max-download-mb: must be above 0; got -1"},
           {"--threads -2", "--threads: must be at least 0; got -2"},
           {"--min-per-class -1", "--min-per-class: must be at least 0; got -1"},
           {"--lmdb-map-mb 0", "--lmdb-map-mb: must be above 0; got 0"}}) {
    out.clear();  // run_command appends
    EXPECT_NE(testing::run_command(
                  tool + " " + (tmp / "src").string() + " " + (tmp / "f").string() + " " + flags, &out),
              0)
        << flags;
    EXPECT_NE(out.find(says), std::string::npos) << flags << ": " << out;
    EXPECT_FALSE(std::filesystem::exists(tmp / "f")) << flags << ": wrote the output folder";
  }
}

}  // namespace
}  // namespace incept::data

// DIGITS' model archive (engine/model_archive.h, tools/export_caffe): a job folder's snapshot
// exported as the flat tar.gz DIGITS' "Download Model" gives: exactly its files, info.json with
// DIGITS' keys, prototxt that parse, the requested blob format, the snapshot chosen by iteration
// or epoch, clear errors, and OpenCV's dnn loading deploy.prototxt + caffemodel from the archive.
#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <set>

#include "data/resize.h"
#include "engine/caffe_model.h"
#include "engine/check.h"
#include "engine/model_archive.h"
#include "models/models.h"
#include "testing/job_fixture.h"
#include "testing/test_util.h"

namespace incept {
namespace {

namespace fs = std::filesystem;

// The archive's entries as libarchive lists them: (name, size), in order.
std::vector<std::pair<std::string, std::int64_t>> list_archive(const fs::path& p) {
  archive* a = archive_read_new();
  archive_read_support_filter_gzip(a);
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_filename(a, p.c_str(), 1 << 16), ARCHIVE_OK);
  std::vector<std::pair<std::string, std::int64_t>> out;
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    out.emplace_back(archive_entry_pathname(e), archive_entry_size(e));
    EXPECT_EQ(archive_entry_filetype(e), AE_IFREG);
  }
  archive_read_free(a);
  return out;
}

// Runs a tool of the build, returning (exit status, stdout + stderr).
std::pair<int, std::string> run_tool(const std::string& args) {
  const std::string cmd = testing::program_command(args) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ModelArchive, GoogLeNetArchiveIsDigitsDownloadModel) {
  const testing::JobFixture job("googlenet", {10, 20});
  const fs::path out = job.dir / "model.tar.gz";
  const auto [rc, text] =
      run_tool(fmt::format("export_caffe --job {} --out {}", job.dir.path().string(), out.string()));
  ASSERT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("snapshot_iter_20.caffemodel (compatible blobs)"), std::string::npos) << text;
  EXPECT_NE(text.find("MiB"), std::string::npos) << text;

  const auto entries = list_archive(out);
  std::vector<std::string> names;
  for (const auto& [n, size] : entries) {
    names.push_back(n);
    EXPECT_GT(size, 0) << n;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"deploy.prototxt", "train_val.prototxt", "solver.prototxt",
                                             "original.prototxt", "labels.txt", "mean.binaryproto",
                                             "snapshot_iter_20.caffemodel", "info.json"}));

  const ModelFiles f = read_model_archive(out);
  const nlohmann::json info = nlohmann::json::parse(f.info_json);
  std::set<std::string> keys;
  for (const auto& [k, v] : info.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"caffe flavor",
                                         "caffe version",
                                         "creation time",
                                         "dataset_id",
                                         "deploy file",
                                         "digits version",
                                         "framework",
                                         "id",
                                         "image dimensions",
                                         "image resize mode",
                                         "job id",
                                         "labels file",
                                         "mean file",
                                         "model file",
                                         "name",
                                         "snapshot file",
                                         "solver file",
                                         "status",
                                         "train_val file",
                                         "username"}));
  EXPECT_EQ(info["snapshot file"], "snapshot_iter_20.caffemodel");
  EXPECT_EQ(info["image dimensions"], nlohmann::json({256, 256, 3}));
  EXPECT_EQ(info["image resize mode"], "squash");
  EXPECT_EQ(info["framework"], "caffe");
  EXPECT_EQ(info["status"], "Done");
  EXPECT_EQ(info["creation time"], "2026-11-30 02:00:00");
  EXPECT_EQ(f.info_json.substr(0, 24), "{\n    \"caffe flavor\": \"i");  // sort_keys, indent 4

  EXPECT_EQ(f.labels().size(), 10u);
  const caffe::NetParameter deploy = parse_net_prototxt(f.deploy_prototxt, "deploy");
  EXPECT_EQ(deploy_input_shape(deploy), (std::vector<std::int64_t>{1, 3, 224, 224}));
  const caffe::NetParameter tv = parse_net_prototxt(f.train_val_prototxt, "train_val");
  EXPECT_EQ(tv.layer(0).transform_param().crop_size(), 224u);
  EXPECT_NE(tv.layer(0).transform_param().mean_file().find("mean.binaryproto"), std::string::npos);
  EXPECT_EQ(parse_net_prototxt(f.original_prototxt, "original").name(), "GoogleNet");
  const caffe::SolverParameter solver = parse_solver_prototxt(f.solver_prototxt, "solver");
  EXPECT_EQ(solver.max_iter(), 20);
  EXPECT_EQ(solver.stepsize(), 7);
  EXPECT_EQ(solver.solver_mode(), caffe::SolverParameter::CPU);  // the job ran on no GPU
  caffe::NetParameter model;
  ASSERT_TRUE(model.ParseFromString(f.caffemodel));
  for (const auto& l : model.layer())
    for (const auto& b : l.blobs()) EXPECT_TRUE(b.has_num() && !b.has_shape()) << l.name();

  // OpenCV loads the two files straight out of the archive and classifies an image.
  const fs::path x = job.dir / "extracted";
  fs::create_directory(x);
  std::ofstream(x / "deploy.prototxt") << f.deploy_prototxt;
  std::ofstream(x / f.caffemodel_name, std::ios::binary) << f.caffemodel;
  cv::dnn::Net net =
      cv::dnn::readNetFromCaffe((x / "deploy.prototxt").string(), (x / f.caffemodel_name).string());
  const data::Image img = data::resize_bilinear(data::to_channels(testing::fashion_image(0), 3), 224, 224);
  cv::Mat rgb(224, 224, CV_8UC3, const_cast<std::uint8_t*>(img.pixels.data()));
  net.setInput(cv::dnn::blobFromImage(rgb, 1.0, cv::Size(224, 224), cv::Scalar(104, 117, 123), true, false));
  const cv::Mat prob = net.forward("softmax");
  ASSERT_EQ(prob.total(), 10u);
  double sum = 0;
  for (int k = 0; k < 10; ++k) sum += prob.ptr<float>()[k];
  EXPECT_NEAR(sum, 1.0, 1e-5);
}

TEST(ModelArchive, SnapshotByIterationOrEpochAndBlobFormat) {
  const testing::JobFixture job("lenet", {10, 20});
  const JobInfo info = read_job(job.dir.path());
  const NetSpec spec = models::lenet();
  ExportOptions o;
  EXPECT_EQ(export_model(info, spec, o).caffemodel_name, "snapshot_iter_20.caffemodel");
  o.epoch = 1;
  EXPECT_EQ(export_model(info, spec, o).caffemodel_name, "snapshot_iter_10.caffemodel");
  o.epoch.reset();
  o.snapshot_iter = 20;
  o.blob_format = BlobFormat::kModern;
  const ModelFiles modern = export_model(info, spec, o);
  EXPECT_EQ(modern.caffemodel_name, "snapshot_iter_20.caffemodel");
  caffe::NetParameter m;
  ASSERT_TRUE(m.ParseFromString(modern.caffemodel));
  for (const auto& l : m.layer())
    for (const auto& b : l.blobs()) EXPECT_TRUE(b.has_shape() && !b.has_num()) << l.name();
  // The weights survive the round trip through the archive bit for bit.
  std::vector<float> back(job.train_plan.param_elems);
  const ImportReport r = import_params(parse_caffemodel(modern.caffemodel, "m"), job.train_plan, back);
  EXPECT_TRUE(r.skipped_shape.empty() && r.missing.empty());
  EXPECT_EQ(back, job.params);
  EXPECT_EQ(deploy_input_shape(parse_net_prototxt(modern.deploy_prototxt, "d")),
            (std::vector<std::int64_t>{1, 1, 28, 28}));
  EXPECT_EQ(epoch_label(1.5), "1.5");
  EXPECT_EQ(epoch_label(2.0), "2");
}

TEST(ModelArchive, TheJobsOwnFilesAreShippedAsTheyAre) {
  const testing::JobFixture job("lenet", {20});
  const std::string solver = "# the solver this job used\nbase_lr: 0.5\n";
  std::ofstream(job.dir / "solver.prototxt") << solver;
  const ModelFiles f = export_model(read_job(job.dir.path()), models::lenet(), {});
  EXPECT_EQ(f.solver_prototxt, solver);
  const fs::path out = job.dir / "m.tar.gz";
  write_model_archive(out, f);
  EXPECT_EQ(read_model_archive(out).solver_prototxt, solver);
}

TEST(ModelArchive, ClearErrors) {
  testing::TempDir empty;
  auto [rc, text] = run_tool(fmt::format("export_caffe --job {} --out {}/m.tar.gz", (empty / "nope").string(),
                                         empty.path().string()));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("no such job folder"), std::string::npos) << text;
  std::tie(rc, text) = run_tool(
      fmt::format("export_caffe --job {} --out {}/m.tar.gz", empty.path().string(), empty.path().string()));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("no job.json"), std::string::npos) << text;

  const testing::JobFixture job("lenet", {10, 20});
  std::tie(rc, text) = run_tool(fmt::format("export_caffe --job {} --epoch 3 --out {}/m.tar.gz",
                                            job.dir.path().string(), empty.path().string()));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("no snapshot of epoch 3; the job has iterations 10 (epoch 1), 20 (epoch 2)"),
            std::string::npos)
      << text;
  // A negative epoch or iteration is refused, not read as "the latest" (it used to export that).
  for (const char* pick : {"--epoch -1", "--snapshot -20"}) {
    std::tie(rc, text) = run_tool(fmt::format("export_caffe --job {} {} --out {}/m.tar.gz",
                                              job.dir.path().string(), pick, empty.path().string()));
    EXPECT_NE(rc, 0) << pick;
    EXPECT_NE(text.find("must be at least 0"), std::string::npos) << pick << ": " << text;
  }
  std::tie(rc, text) = run_tool(fmt::format("export_caffe --job {} --out {}/m.tar.gz --blob-format old",
                                            job.dir.path().string(), empty.path().string()));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("unknown blob format 'old'"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(empty / "m.tar.gz"));

  const testing::JobFixture none("lenet", {});
  EXPECT_NE(testing::error_of([&] {
              export_model(read_job(none.dir.path()), models::lenet(), {});
            }).find("no snapshot yet"),
            std::string::npos);
  // A snapshot of another class count than deploy.prototxt says: refused, not shipped.
  const testing::JobFixture other("lenet", {20});
  nlohmann::json j = nlohmann::json::parse(std::ifstream(other.dir / "job.json"));
  j["num_classes"] = 7;
  std::ofstream(other.dir / "job.json") << j.dump();
  const std::string misfit =
      testing::error_of([&] { export_model(read_job(other.dir.path()), models::lenet(), {}); });
  EXPECT_NE(misfit.find("does not fit deploy.prototxt"), std::string::npos) << misfit;
  EXPECT_NE(misfit.find("ip2: weights 1x1x10x500 in the file, 7x500 in the net"), std::string::npos)
      << misfit;
  // Not an archive at all.
  std::ofstream(empty / "junk.tar.gz") << "this is not a tar file";
  EXPECT_NE(testing::error_of([&] { read_model_archive(empty / "junk.tar.gz"); }).find("junk.tar.gz"),
            std::string::npos);
}

}  // namespace
}  // namespace incept

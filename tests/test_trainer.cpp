// The training job on the CPU reference (engine/trainer.h), end to end on real Fashion-MNIST
// images ingested into a real LMDB dataset: DIGITS' LeNet trains (validation accuracy well
// above chance), the job folder holds what DIGITS' would (settings, prototxts, Caffe
// snapshots that parse back, metrics, report), a resumed job follows the uninterrupted one
// bit for bit, a diverging run stops with a clear message, and bad input is refused before
// training starts.
#include <gtest/gtest.h>
#include <lmdb.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "data/caffe.pb.h"
#include "data/datum.h"
#include "data/idx.h"
#include "data/ingest.h"
#include "engine/check.h"
#include "engine/snapshot.h"
#include "engine/trainer.h"
#include "testing/test_util.h"

namespace fs = std::filesystem;
using incept::testing::TempDir;

namespace incept {
namespace {

// Fashion-MNIST, `per_class` images of each of the 10 classes, ingested as DIGITS would for
// LeNet (28x28 gray) or GoogLeNet (256x256 colour, the defaults).
void make_dataset(const fs::path& dir, int per_class, bool gray) {
  const fs::path images = dir.string() + "_images";
  data::write_fashion_mnist_folder(images.string(), per_class);
  data::IngestOptions o;
  o.source = images.string();
  o.output_dir = dir.string();
  if (gray) o.width = o.height = 28, o.channels = 1, o.encoding = data::Encoding::kPng;
  o.threads = 2;
  o.progress_interval_s = 100;
  data::run_ingest(o);
}

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(data::fashion_mnist_dir())) return;
    root_ = new TempDir("incept_trainer");
    make_dataset(root_->path() / "fmnist", 40, true);  // 300 train / 100 val records
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    if (!root_) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  }
  static fs::path dataset() { return root_->path() / "fmnist"; }

  TrainConfig lenet(const fs::path& job, double epochs, std::uint64_t seed = 7) const {
    TrainConfig c;
    c.dataset_dir = dataset().string();
    c.job_dir = job.string();
    c.network = "lenet";
    c.form.epochs = epochs;
    c.form.batch_size = 32;
    c.seed = seed;
    return c;
  }
  static TempDir* root_;
  TempDir tmp_{"incept_job"};
};
TempDir* TrainerTest::root_ = nullptr;

TEST_F(TrainerTest, LeNetLearnsAndTheJobFolderHoldsDigitsFiles) {
  const fs::path job = tmp_ / "job";
  const TrainResult r = train_job(lenet(job, 3));
  ASSERT_TRUE(r.finished);
  EXPECT_EQ(r.iter, 30);  // ceil(300 / 32) = 10 iterations per epoch
  // Well above chance (10 %) after 30 SGD steps on real images.
  EXPECT_GT(testing::metric(r.final_val, "accuracy"), 0.45) << "final validation accuracy";
  for (const char* f : {"job.json", "labels.txt", "mean.binaryproto", "train_val.prototxt", "deploy.prototxt",
                        "solver.prototxt", "original.prototxt", "metrics.csv", "metrics.jsonl", "report.html",
                        "report.png", "train.log"})
    EXPECT_TRUE(fs::exists(job / f)) << f;
  // Snapshots every epoch (DIGITS' default), only the newest solverstate kept.
  const auto snaps = list_snapshots(job);
  ASSERT_EQ(snaps.size(), 3u);
  EXPECT_EQ(snaps[0].iter, 10);
  EXPECT_EQ(snaps[2].iter, 30);
  EXPECT_TRUE(snaps[0].solverstate.empty());
  ASSERT_FALSE(snaps[2].solverstate.empty());
  EXPECT_EQ(r.last_snapshot, snaps[2].caffemodel.string());

  // The caffemodel parses with the project's schema: LeNet's learnable layers with Caffe's shapes.
  caffe::NetParameter net;
  ASSERT_TRUE(net.ParseFromString(testing::read_file(snaps[2].caffemodel)));
  int with_blobs = 0;
  for (const auto& l : net.layer())
    if (l.blobs_size()) {
      ++with_blobs;
      if (l.name() == "conv1") {
        ASSERT_EQ(l.blobs_size(), 2);
        EXPECT_EQ(l.blobs(0).data_size(), 20 * 1 * 5 * 5);
        EXPECT_EQ(l.blobs(1).data_size(), 20);
      }
    }
  EXPECT_EQ(with_blobs, 4);  // conv1, conv2, ip1, ip2
  caffe::SolverState st;
  ASSERT_TRUE(st.ParseFromString(testing::read_file(snaps[2].solverstate)));
  EXPECT_EQ(st.iter(), 30);
  EXPECT_EQ(st.learned_net(), "snapshot_iter_30.caffemodel");
  EXPECT_EQ(st.history_size(), 8);
  EXPECT_EQ(st.incept_seed(), 7u);

  // Metrics: a validation before training and after every epoch; train rows at DIGITS' display.
  std::ifstream csv(job / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_NE(header.find("phase,epoch,iteration,lr"), std::string::npos) << header;
  EXPECT_NE(header.find("accuracy"), std::string::npos) << header;
  int val_rows = 0, train_rows = 0;
  while (std::getline(csv, line)) (line.rfind("val,", 0) == 0 ? val_rows : train_rows)++;
  EXPECT_EQ(val_rows, 4);
  EXPECT_EQ(train_rows, 30);
  const nlohmann::json j = nlohmann::json::parse(testing::read_file(job / "job.json"));
  EXPECT_EQ(j["num_classes"], 10);
  EXPECT_EQ(j["solver"]["max_iter"], 30);
  EXPECT_EQ(j["solver"]["train_iter"], 10);
  const cv::Mat png = cv::imread((job / "report.png").string());
  EXPECT_FALSE(png.empty());
  EXPECT_NE(testing::read_file(job / "report.html").find("<svg"), std::string::npos);
}

TEST_F(TrainerTest, ResumeFollowsTheUninterruptedRunBitwise) {
  const TrainResult a = train_job(lenet(tmp_ / "a", 2));
  ASSERT_TRUE(a.finished);

  TrainConfig b = lenet(tmp_ / "b", 2);
  b.stop_at = 7;  // mid-epoch, not a snapshot boundary
  const TrainResult stopped = train_job(b);
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.iter, 7);
  EXPECT_TRUE(fs::exists(tmp_ / "b" / "snapshot_iter_7.solverstate"));

  TrainConfig resume;
  resume.job_dir = (tmp_ / "b").string();
  resume.resume = true;
  const TrainResult done = train_job(resume);
  ASSERT_TRUE(done.finished);
  EXPECT_EQ(done.iter, 20);
  EXPECT_EQ(testing::read_file(tmp_ / "a" / "snapshot_iter_20.caffemodel"),
            testing::read_file(tmp_ / "b" / "snapshot_iter_20.caffemodel"))
      << "the resumed job's weights differ from the uninterrupted job's";
  EXPECT_EQ(testing::read_file(tmp_ / "a" / "snapshot_iter_20.solverstate").size(),
            testing::read_file(tmp_ / "b" / "snapshot_iter_20.solverstate").size());
  EXPECT_EQ(testing::metric(a.final_val, "loss"), testing::metric(done.final_val, "loss"));
  // The resumed metrics have no duplicated iterations.
  std::ifstream csv(tmp_ / "b" / "metrics.csv");
  std::string line;
  std::getline(csv, line);
  std::set<std::string> seen;
  while (std::getline(csv, line)) {
    const std::string key = line.substr(0, line.find(',', line.find(',', line.find(',') + 1) + 1));
    EXPECT_TRUE(seen.insert(key).second) << "duplicate metrics row " << key;
  }
}

TEST_F(TrainerTest, ADivergingRunStopsWithAClearMessage) {
  TrainConfig c = lenet(tmp_ / "nan", 2);
  c.form.base_lr = 1e7;
  try {
    train_job(c);
    FAIL() << "a learning rate of 1e7 did not diverge";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("diverged"), std::string::npos) << m;
    EXPECT_NE(m.find("Lower the learning rate"), std::string::npos) << m;
  }
  for (const auto& s : list_snapshots(tmp_ / "nan")) {  // any snapshot kept holds finite weights
    caffe::NetParameter net;
    ASSERT_TRUE(net.ParseFromString(testing::read_file(s.caffemodel)));
    for (const auto& l : net.layer())
      for (const auto& b : l.blobs())
        for (float v : b.data()) ASSERT_TRUE(std::isfinite(v)) << s.caffemodel;
  }
  EXPECT_TRUE(fs::exists(tmp_ / "nan" / "metrics.csv"));
}

void expect_error(const TrainConfig& c, const std::string& needle) {
  try {
    train_job(c);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, BadInputIsRefusedBeforeTraining) {
  TrainConfig c = lenet(tmp_ / "job", 1);
  c.dataset_dir = (tmp_ / "missing").string();
  expect_error(c, "does not exist");

  fs::create_directories(tmp_ / "empty");
  c.dataset_dir = (tmp_ / "empty").string();
  expect_error(c, "not a dataset folder");

  // A job folder that is not empty, without --resume.
  c = lenet(tmp_ / "full", 1);
  fs::create_directories(tmp_ / "full");
  std::ofstream(tmp_ / "full" / "x") << "x";
  expect_error(c, "not empty");

  // --resume of a folder that never trained.
  TrainConfig r;
  r.job_dir = (tmp_ / "full").string();
  r.resume = true;
  expect_error(r, "job.json");

  // labels.txt listing fewer classes than the records carry.
  const fs::path broken = tmp_ / "broken";
  fs::copy(dataset(), broken, fs::copy_options::recursive);
  {
    std::ofstream l(broken / "labels.txt");
    l << "a\nb\nc\n";
  }
  c = lenet(tmp_ / "j2", 1);
  c.dataset_dir = broken.string();
  expect_error(c, "labels.txt");

  // A bf16 request on the CPU, a GPU that does not exist.
  c = lenet(tmp_ / "j3", 1);
  c.precision = "bf16";
  expect_error(c, "fp32");
  c = lenet(tmp_ / "j4", 1);
  c.gpus = {7};
  expect_error(c, "--gpus 7");
  c = lenet(tmp_ / "j5", 1);
  c.mean = "median";
  expect_error(c, "--mean");
  c = lenet(tmp_ / "j6", 1);
  c.grad_allreduce = "fp16";
  expect_error(c, "--grad-allreduce must be fp32 or bf16");
  // A job folder that cannot be created (even root cannot make a folder inside a device file).
  c = lenet("/dev/null/job", 1);
  expect_error(c, "cannot create the job folder");
}

TEST_F(TrainerTest, WeightsFromACaffemodelStartTheJob) {
  const TrainResult a = train_job(lenet(tmp_ / "a", 1));
  ASSERT_TRUE(a.finished);
  // Fine-tuning with learning rate 0: the new job's weights are exactly the caffemodel's.
  TrainConfig b = lenet(tmp_ / "b", 1, 99);
  b.weights = a.last_snapshot;
  b.form.base_lr = 0;
  b.max_iter = 1;
  const TrainResult r = train_job(b);
  ASSERT_TRUE(r.finished);
  const auto wa = read_caffemodel(a.last_snapshot), wb = read_caffemodel(r.last_snapshot);
  ASSERT_EQ(wa.size(), wb.size());
  for (std::size_t l = 0; l < wa.size(); ++l) {
    ASSERT_EQ(wa[l].name, wb[l].name);
    for (std::size_t k = 0; k < wa[l].blobs.size(); ++k) EXPECT_EQ(wa[l].blobs[k].data, wb[l].blobs[k].data);
  }
  EXPECT_NE(testing::read_file(tmp_ / "b" / "train.log").find("initialised 4 layers from"),
            std::string::npos);
  // A file that is no caffemodel is refused before training.
  TrainConfig c = lenet(tmp_ / "c", 1);
  c.weights = (tmp_ / "b" / "job.json").string();
  EXPECT_THROW(train_job(c), Error);
}

TEST_F(TrainerTest, TrainAndValidationRecordsOfDifferentSizesAreRefused) {
  const fs::path other = tmp_ / "other";
  make_dataset(other, 3, false);  // 256x256 colour records
  const fs::path mixed = tmp_ / "mixed";
  fs::copy(dataset(), mixed, fs::copy_options::recursive);
  fs::remove_all(mixed / "val_db");
  fs::copy(other / "val_db", mixed / "val_db", fs::copy_options::recursive);
  TrainConfig c = lenet(tmp_ / "job", 1);
  c.dataset_dir = mixed.string();
  expect_error(c, "val_db records are 256x256x3");
}

TEST_F(TrainerTest, CorruptRecordsAreSkippedAndCounted) {
  const fs::path ds = tmp_ / "corrupt";
  fs::copy(dataset(), ds, fs::copy_options::recursive);
  {  // overwrite a few records with garbage (keys kept)
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_open(env, (ds / "train_db").c_str(), 0, 0664), 0);
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
    MDB_cursor* cur = nullptr;
    ASSERT_EQ(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k, v;
    std::vector<std::string> keys;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && keys.size() < 40;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
      keys.emplace_back(static_cast<char*>(k.mv_data), k.mv_size);
    mdb_cursor_close(cur);
    std::string junk = "this is not a Datum";
    for (std::size_t i = 5; i < keys.size(); i += 12) {
      MDB_val kk{keys[i].size(), keys[i].data()}, vv{junk.size(), junk.data()};
      ASSERT_EQ(mdb_put(txn, dbi, &kk, &vv, 0), 0);
    }
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  TrainConfig c = lenet(tmp_ / "job", 1);
  c.dataset_dir = ds.string();
  const TrainResult r = train_job(c);
  EXPECT_TRUE(r.finished);
  EXPECT_GT(r.corrupt_records, 0);
}

}  // namespace
}  // namespace incept

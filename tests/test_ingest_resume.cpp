// Interrupted runs and write faults: a stop (Ctrl-C path) and a kill -9 in the middle of an
// HTTP ingest both continue with --resume to exactly the dataset an uninterrupted run
// writes (same keys, same records, same mean, nothing duplicated); a different option set
// is refused on resume; a full LMDB map grows; a write failure (file size limit, as on a
// full disk) is a clear error that leaves a consistent LMDB which --resume completes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/idx.h"
#include "data/ingest.h"
#include "testing/http_server.h"
#include "testing/test_util.h"

namespace incept::data {
namespace {
namespace fs = std::filesystem;
using testing::HttpServer;

const std::string kTool = testing::test_program("imagenet_ingest");

IngestOptions base_options(const std::string& source, const fs::path& out) {
  IngestOptions o;
  o.source = source;
  o.output_dir = out.string();
  o.width = o.height = 32;
  o.plan.seed = 11;
  o.batch_records = 16;
  o.progress_interval_s = 60;
  return o;
}

// The whole content of a finished dataset, for exact comparison with a reference run.
void expect_same_dataset(const fs::path& a, const fs::path& b) {
  for (const char* f : {"labels.txt", "train.txt", "val.txt", "mean.binaryproto"})
    EXPECT_EQ(testing::read_file(a / f), testing::read_file(b / f)) << f;
  for (const char* db : {"train_db", "val_db"}) {
    const auto ra = testing::mdb_dump_records(a / db), rb = testing::mdb_dump_records(b / db);
    EXPECT_EQ(ra.size(), rb.size()) << db;
    EXPECT_TRUE(ra == rb) << db << ": records differ";
  }
}

TEST(IngestResume, StopThenResumeEqualsOneRun) {
  testing::TempDir tmp("ingest_stop");
  write_fashion_mnist_folder((tmp / "src").string(), 20, "t10k");
  IngestOptions ref = base_options((tmp / "src").string(), tmp / "ref");
  const IngestReport full = run_ingest(ref);
  ASSERT_EQ(full.train_records + full.val_records, 200);

  IngestOptions o = base_options((tmp / "src").string(), tmp / "out");
  o.stop_after_records = 50;
  const IngestReport first = run_ingest(o);
  EXPECT_TRUE(first.interrupted);
  EXPECT_GE(first.written_now, 48);
  EXPECT_LT(first.train_records + first.val_records, 200);
  // Without --resume the folder is refused; with other options the resume is refused.
  o.stop_after_records = -1;
  EXPECT_THROW(run_ingest(o), Error);
  o.resume = true;
  o.width = 40;
  try {
    run_ingest(o);
    ADD_FAILURE() << "resume with another width must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("width"), std::string::npos) << e.what();
  }
  o.width = 32;
  // As if the run had died after saving the sums of one more batch but before committing it:
  // mean_sums.bin covers 16 records the LMDB does not hold, mean_sums.prev.bin the committed
  // ones. The resume must take the latter (a rebuild from JPEG records would shift the mean).
  {
    const fs::path st = tmp / "out" / ".ingest_state";
    fs::copy_file(st / "mean_sums.bin", st / "mean_sums.prev.bin", fs::copy_options::overwrite_existing);
    std::fstream f(st / "mean_sums.bin", std::ios::in | std::ios::out | std::ios::binary);
    std::int64_t head[5] = {};
    f.seekg(8);
    ASSERT_TRUE(f.read(reinterpret_cast<char*>(head), sizeof head));
    head[0] += 16, head[1] += 16;
    const std::uint64_t other = 12345;
    f.seekp(8);
    f.write(reinterpret_cast<const char*>(head), sizeof head);
    f.write(reinterpret_cast<const char*>(&other), sizeof other);
    ASSERT_TRUE(f.good());
  }
  const IngestReport second = run_ingest(o);
  EXPECT_FALSE(second.interrupted);
  EXPECT_EQ(second.skipped_existing, first.train_records + first.val_records);
  EXPECT_EQ(second.written_now + second.skipped_existing, 200);
  expect_same_dataset(tmp / "ref", tmp / "out");
  std::ifstream jf(tmp / "out" / "dataset.json");
  const auto j = nlohmann::json::parse(jf);
  EXPECT_TRUE(j["resumed"].get<bool>());
  EXPECT_FALSE(j["interrupted"].get<bool>());
  EXPECT_EQ(j["counts"]["train"].get<int>() + j["counts"]["val"].get<int>(), 200);
}

// Starts the tool on url -> out, waits for some committed batches, sends `sig`, returns
// the wait status.
int interrupt_tool(const std::string& url, const fs::path& out, int sig) {
  const int pid = fork();
  if (pid == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    execl(kTool.c_str(), kTool.c_str(), url.c_str(), out.c_str(), "--width", "32", "--height", "32", "--seed",
          "11", "--batch", "16", "--downloads", "2", "--threads", "1", nullptr);
    _exit(127);
  }
  long entries = 0;
  for (int i = 0; i < 400 && entries < 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (fs::exists(out / "train_db" / "data.mdb")) entries = testing::mdb_stat_entries(out / "train_db");
  }
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(IngestResume, CtrlCMidHttpRunThenResume) {
  testing::TempDir tmp("ingest_sigint");
  write_fashion_mnist_folder((tmp / "src").string(), 40, "t10k");
  HttpServer server = HttpServer::python(tmp / "src");
  const std::string url = server.url("/");
  run_ingest(base_options(url, tmp / "ref"));
  const int status = interrupt_tool(url, tmp / "out", SIGINT);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130) << "interrupted runs exit 130 after committing what is in flight";
  std::ifstream jf(tmp / "out" / "dataset.json");
  EXPECT_TRUE(nlohmann::json::parse(jf)["interrupted"].get<bool>());
  std::string log;
  ASSERT_EQ(testing::run_command(kTool + " " + url + " " + (tmp / "out").string() +
                                     " --width 32 --height 32 --seed 11 --batch 16 --resume",
                                 &log),
            0)
      << log;
  expect_same_dataset(tmp / "ref", tmp / "out");
}

TEST(IngestResume, KillDashNineMidHttpRunThenResume) {
  testing::TempDir tmp("ingest_kill");
  write_fashion_mnist_folder((tmp / "src").string(), 40, "t10k");
  HttpServer server = HttpServer::python(tmp / "src");
  const std::string url = server.url("/");
  run_ingest(base_options(url, tmp / "ref"));

  const fs::path out = tmp / "out";
  const int status = interrupt_tool(url, out, SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  const long at_kill = testing::mdb_stat_entries(out / "train_db");
  EXPECT_GE(at_kill, 16);
  EXPECT_LT(at_kill, 300);

  std::string log;
  const int rc = testing::run_command(
      kTool + " " + url + " " + out.string() + " --width 32 --height 32 --seed 11 --batch 16 --resume", &log);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("already written"), std::string::npos) << log;
  expect_same_dataset(tmp / "ref", out);
}

TEST(IngestResume, FullMapGrows) {
  testing::TempDir tmp("ingest_map");
  write_fashion_mnist_folder((tmp / "src").string(), 10, "t10k");
  IngestOptions o = base_options((tmp / "src").string(), tmp / "out");
  o.encoding = Encoding::kNone;
  o.lmdb_map_bytes = 64 << 10;  // 64 KiB: full after a few records
  const IngestReport r = run_ingest(o);
  EXPECT_EQ(r.train_records + r.val_records, 100);
  std::ifstream jf(tmp / "out" / "dataset.json");
  EXPECT_GT(nlohmann::json::parse(jf)["lmdb_map_grows"].get<int>(), 0);
  EXPECT_EQ(testing::mdb_stat_entries(tmp / "out" / "train_db"), r.train_records);
}

TEST(IngestResume, WriteFailureIsClearAndResumable) {
  testing::TempDir tmp("ingest_efbig");
  write_fashion_mnist_folder((tmp / "src").string(), 30, "t10k");
  const std::string args = " " + (tmp / "src").string() + " " + (tmp / "out").string() +
                           " --width 64 --height 64 --encoding none --batch 16 --seed 5";
  // A file size limit of ~1 MiB makes data.mdb writes fail (EFBIG) as a full disk would.
  std::string log;
  const int rc = testing::run_command("trap '' XFSZ; ulimit -f 2048; exec " + kTool + args, &log);
  EXPECT_EQ(rc, 1) << log;
  EXPECT_NE(log.find("LMDB"), std::string::npos) << log;
  EXPECT_NE(log.find("--resume"), std::string::npos) << log;
  const long entries = testing::mdb_stat_entries(tmp / "out" / "train_db");
  EXPECT_GE(entries, 0) << "the LMDB must stay readable";
  EXPECT_EQ(long(testing::mdb_dump_records(tmp / "out" / "train_db").size()), entries);
  log.clear();
  ASSERT_EQ(testing::run_command(kTool + args + " --resume", &log), 0) << log;
  EXPECT_EQ(
      testing::mdb_stat_entries(tmp / "out" / "train_db") + testing::mdb_stat_entries(tmp / "out" / "val_db"),
      300);
}

}  // namespace
}  // namespace incept::data

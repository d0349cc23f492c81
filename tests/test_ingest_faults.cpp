// Every fault an HTTP image folder can throw at imagenet_ingest, served by a real (Python)
// server started here: each bad URL is skipped with a message naming it, counted in
// dataset.json, and the run still produces the dataset from what is usable. A source with
// nothing usable, or a start URL that is not a listing, is a clear error.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/idx.h"
#include "data/ingest.h"
#include "testing/http_server.h"
#include "testing/test_util.h"

namespace incept::data {
namespace {
namespace fs = std::filesystem;
using testing::HttpServer;

const fs::path kScript = fs::path(INCEPT_TEST_SOURCE_DIR) / "ingest_fault_server.py";

IngestOptions fault_options(const std::string& url, const fs::path& out) {
  IngestOptions o;
  o.source = url;
  o.output_dir = out.string();
  o.width = o.height = 32;
  o.progress_interval_s = 60;
  o.http.stall_timeout_s = 2;
  o.http.timeout_s = 8;
  o.http.connect_timeout_s = 3;
  o.http.max_redirects = 4;
  return o;
}

std::string reason_for(const nlohmann::json& j, const std::string& url_part) {
  for (const auto& f : j["failures"]["items"])
    if (f["url"].get<std::string>().find(url_part) != std::string::npos) return f["reason"];
  return "(not reported)";
}

// tmp/img/cat: 6 good images; tmp/img/dog: 6 + 3 in dog/deep.
void make_images(const fs::path& tmp) {
  write_fashion_mnist_folder((tmp / "all").string(), 6, "t10k");
  fs::create_directories(tmp / "img");
  fs::rename(tmp / "all" / "Bag", tmp / "img" / "cat");
  fs::rename(tmp / "all" / "Coat", tmp / "img" / "dog");
  fs::create_directories(tmp / "img" / "dog" / "deep");
  int n = 0;
  for (const auto& e : fs::directory_iterator(tmp / "all" / "Dress"))
    if (n++ < 3) fs::copy_file(e.path(), tmp / "img" / "dog" / "deep" / e.path().filename());
}

TEST(IngestFaults, EveryFaultIsSkippedNamedAndCounted) {
  testing::TempDir tmp("ingest_faults");
  make_images(tmp.path());
  HttpServer server = HttpServer::script(kScript, {(tmp / "img").string()});
  IngestOptions o = fault_options(server.url("/data"), tmp / "out");
  const auto t0 = std::chrono::steady_clock::now();
  const IngestReport r = run_ingest(o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 30) << "stalls and hangs are cut by the stall timeout";
  // cat: 6 good + moved.jpg (a redirect inside the start URL); dog: 6 + 3 deeper.
  EXPECT_EQ(r.train_records + r.val_records, 16);
  std::ifstream lf(tmp / "out" / "labels.txt");
  std::string l1, l2, l3;
  std::getline(lf, l1), std::getline(lf, l2);
  EXPECT_EQ(l1, "cat");
  EXPECT_EQ(l2, "dog");
  EXPECT_FALSE(std::getline(lf, l3)) << "classes whose listing failed are dropped";

  std::ifstream jf(tmp / "out" / "dataset.json");
  const auto j = nlohmann::json::parse(jf);
  const std::string u = server.url("/data/");
  const std::map<std::string, std::string> expected = {
      {u + "broken/", "HTTP 500"},
      {u + "missing/", "HTTP 404"},
      {u + "nolisting/", "not a directory listing"},
      {"http://evil.example/x/", "leaves the start URL"},
      {"/other/", "leaves the start URL"},
      {"../../etc/", ".."},
      {"http://127.0.0.2:9/data/cat/x.jpg", "leaves the start URL"},
      {"/secret/x.jpg", "leaves the start URL"},
      {"sub/../../../x.jpg", ".."},
      {u + "cat/missing.jpg", "HTTP 404"},
      {u + "cat/error.jpg", "HTTP 500"},
      {u + "cat/stall.jpg", "timed out"},
      {u + "cat/hang.jpg", "timed out"},
      {u + "cat/cut.jpg", "truncated"},
      {u + "cat/truncated.jpg", "truncated"},
      {u + "cat/corrupt.jpg", "JPEG"},
      {u + "cat/notimage.jpg", "not an image"},
      {u + "cat/empty.jpg", "empty"},
      {u + "cat/huge.png", "above the limit"},
      {u + "cat/loop.jpg", "redirect loop"},
      {u + "cat/away.jpg", "leaves the start URL"},
  };
  for (const auto& [url, why] : expected)
    EXPECT_NE(reason_for(j, url).find(why), std::string::npos) << url << ": " << reason_for(j, url);
  EXPECT_EQ(reason_for(j, u + "cat/moved.jpg"), "(not reported)");
  // Each failure above once, plus the three classes dropped for having no images.
  EXPECT_EQ(j["failures"]["total"].get<int>(), int(expected.size()) + 3) << j["failures"].dump(1);
  EXPECT_FALSE(j["failures"]["by_reason"].empty());

  // --resume does not crawl again: it retries only the missing records and still reports the
  // crawl failures of the first run.
  o.resume = true;
  const IngestReport again = run_ingest(o);
  EXPECT_EQ(again.written_now, 0);
  EXPECT_EQ(again.skipped_existing, 16);
  std::ifstream jf2(tmp / "out" / "dataset.json");
  const auto j2 = nlohmann::json::parse(jf2);
  EXPECT_EQ(j2["failures"]["total"], j["failures"]["total"]);
  EXPECT_NE(reason_for(j2, u + "broken/").find("HTTP 500"), std::string::npos);
}

TEST(IngestFaults, NothingUsableOrNoListingIsAClearError) {
  testing::TempDir tmp("ingest_faults_fatal");
  make_images(tmp.path());
  HttpServer server = HttpServer::script(kScript, {(tmp / "img").string()});
  auto error_of = [&](const std::string& url, const std::string& out) {
    try {
      run_ingest(fault_options(url, tmp / out));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string e = error_of(server.url("/data/nolisting/"), "o1");
  EXPECT_NE(e.find(server.url("/data/nolisting/")), std::string::npos) << e;
  EXPECT_NE(e.find("not a directory listing"), std::string::npos) << e;
  e = error_of(server.url("/nowhere/"), "o2");
  EXPECT_NE(e.find("HTTP 404"), std::string::npos) << e;
  e = error_of("http://127.0.0.1:1/data/", "o3");
  EXPECT_NE(e.find("http://127.0.0.1:1/data/"), std::string::npos) << e;
  // Every image fails: a folder of only broken files.
  fs::create_directories(tmp / "bad" / "a");
  fs::create_directories(tmp / "bad" / "b");
  for (const char* c : {"a", "b"})
    for (int i = 0; i < 3; ++i) std::ofstream(tmp / "bad" / c / fmt::format("x{}.jpg", i)) << "garbage";
  IngestOptions o = fault_options((tmp / "bad").string(), tmp / "o4");
  try {
    run_ingest(o);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("no usable training image"), std::string::npos) << err.what();
  }
  EXPECT_TRUE(fs::exists(tmp / "o4" / "dataset.json"));
}

}  // namespace
}  // namespace incept::data

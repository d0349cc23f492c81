// The crawler's per-host pace against real servers on 127.0.0.1 of known capacity
// (tests/ingest_pace_server.py, nginx): a server with a tiny listen queue is ingested without
// the multi-second waits of dropped connection attempts, a server that keeps up gets the
// per-host ceiling (counted by the server itself), 503s are retried after a pause instead of
// failing, and a request lost in a server's queue is asked again instead of waited for.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "data/http_fetcher.h"
#include "data/idx.h"
#include "data/ingest.h"
#include "testing/http_server.h"
#include "testing/test_util.h"

namespace incept::data {
namespace {
namespace fs = std::filesystem;
using testing::HttpServer;

const fs::path kScript = fs::path(INCEPT_TEST_SOURCE_DIR) / "ingest_pace_server.py";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The image paths under dir ("Bag/12.png", ...), sorted.
std::vector<std::string> image_paths(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir).generic_string());
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json server_stats(const HttpServer& s) {
  std::string text;
  EXPECT_EQ(testing::run_command("curl -s --max-time 10 " + s.url("/_stats"), &text), 0) << text;
  return nlohmann::json::parse(text);
}

// Longest time between two consecutive requests the server received (seconds).
double longest_gap(const nlohmann::json& stats) {
  const auto& a = stats["arrivals"];
  double gap = 0;
  for (std::size_t i = 1; i < a.size(); ++i) gap = std::max(gap, a[i].get<double>() - a[i - 1].get<double>());
  return gap;
}

struct Fetched {
  int ok = 0;
  std::vector<std::string> errors;
  double seconds = 0;
  HttpFetcher::HostStats host;
};

// GETs every path from the server with one fetcher; the results are taken as they come.
Fetched fetch_all(const HttpServer& server, const std::vector<std::string>& paths, HttpOptions opt) {
  opt.max_outstanding = int(paths.size()) + 1;
  Fetched f;
  const auto t0 = std::chrono::steady_clock::now();
  HttpFetcher fetcher(opt, *parse_url(server.url("/")));
  for (std::size_t i = 0; i < paths.size(); ++i) fetcher.submit(server.url("/" + paths[i]), i);
  fetcher.close();
  FetchResult r;
  while (fetcher.next(&r)) {
    if (r.ok())
      ++f.ok;
    else
      f.errors.push_back(r.url + ": " + r.error);
  }
  f.seconds = seconds_since(t0);
  const auto hosts = fetcher.host_stats();
  EXPECT_EQ(hosts.size(), 1u);
  if (!hosts.empty()) f.host = hosts[0];
  return f;
}

TEST(IngestPace, TinyListenQueueIsCrawledWithoutStalls) {
  // One thread, backlog 1: 32 connection attempts at once leave ~29 SYNs dropped, each
  // waiting 1 s, 3 s, 7 s... for TCP's retransmission; before the pace adapted, this ingest
  // took 34 s with a 13 s pause in the server's log and 9 connect timeouts.
  testing::TempDir tmp("ingest_pace_small");
  write_fashion_mnist_folder((tmp / "src").string(), 40, "t10k");
  HttpServer server = HttpServer::script(kScript, {"small", (tmp / "src").string()});
  IngestOptions o;
  o.source = server.url("/");
  o.output_dir = (tmp / "out").string();
  o.width = o.height = 28;
  o.progress_interval_s = 60;
  const auto t0 = std::chrono::steady_clock::now();
  const IngestReport r = run_ingest(o);
  const double secs = seconds_since(t0);
  EXPECT_EQ(r.train_records + r.val_records, 400);
  EXPECT_EQ(r.failures, 0);
  EXPECT_LT(secs, 15) << "the server serves 400 images in about a second";

  const auto stats = server_stats(server);
  EXPECT_LT(longest_gap(stats), 2.0) << "the server sat idle while the crawler waited on dropped SYNs";
  ASSERT_EQ(r.download_hosts.size(), 1u);
  const auto& p = r.download_hosts[0].pacer.stats();
  EXPECT_EQ(r.download_hosts[0].host, fmt::format("http://127.0.0.1:{}", server.port()));
  EXPECT_LE(p.limit, 4) << "the pace of a one-thread server";
  EXPECT_LE(p.peak_active, 32);
  fmt::print("small server: {:.2f} s, longest idle {:.2f} s; {}\n", secs, longest_gap(stats),
             describe(r.download_hosts[0]));
}

TEST(IngestPace, ServerThatKeepsUpGetsTheCeiling) {
  // 20 ms per answer, a thread per connection, backlog 1024: connections are throughput.
  testing::TempDir tmp("ingest_pace_fast");
  write_fashion_mnist_folder((tmp / "src").string(), 40, "t10k");
  HttpServer server = HttpServer::script(kScript, {"fast", (tmp / "src").string()});
  HttpOptions opt;
  opt.max_per_host = 16;
  const Fetched f = fetch_all(server, image_paths(tmp / "src"), opt);
  EXPECT_EQ(f.ok, 400) << (f.errors.empty() ? "" : f.errors[0]);
  const auto stats = server_stats(server);
  EXPECT_EQ(stats["max_active"], 16) << "the server saw the ceiling, never more";
  EXPECT_EQ(f.host.pacer.stats().peak_active, 16);
  EXPECT_EQ(f.host.pacer.stats().limit, 16);
  EXPECT_EQ(f.host.pacer.stats().decreases, 0);
  EXPECT_EQ(f.host.abandoned, 0);
  EXPECT_LT(f.seconds, 400 * 0.020 / 8) << "at least half the ceiling's throughput";
  fmt::print("fast server: {:.2f} s; {}\n", f.seconds, describe(f.host));
}

TEST(IngestPace, NginxGetsTheCeiling) {
  if (!testing::have_nginx()) GTEST_SKIP() << "nginx not installed (apt-get install nginx-light)";
  testing::TempDir tmp("ingest_pace_nginx");
  write_fashion_mnist_folder((tmp / "src").string(), 60, "t10k");
  HttpServer server = HttpServer::nginx(tmp / "src");
  const Fetched f = fetch_all(server, image_paths(tmp / "src"), HttpOptions{});
  EXPECT_EQ(f.ok, 600) << (f.errors.empty() ? "" : f.errors[0]);
  EXPECT_EQ(f.host.pacer.stats().peak_active, 32) << "the default ceiling (--per-host)";
  EXPECT_EQ(f.host.pacer.stats().decreases, 0);
  EXPECT_EQ(f.host.abandoned, 0);
  fmt::print("nginx: {:.2f} s; {}\n", f.seconds, describe(f.host));
}

TEST(IngestPace, BusyAnswersAreRetriedAfterAPause) {
  // 503 while more than 3 requests are in progress. Before, most of these downloads failed.
  testing::TempDir tmp("ingest_pace_busy");
  write_fashion_mnist_folder((tmp / "src").string(), 20, "t10k");
  HttpServer server = HttpServer::script(kScript, {"busy", (tmp / "src").string()});
  HttpOptions opt;
  opt.max_per_host = 16;
  const Fetched f = fetch_all(server, image_paths(tmp / "src"), opt);
  EXPECT_EQ(f.ok, 200) << (f.errors.empty() ? "" : f.errors[0]);
  const auto stats = server_stats(server);
  EXPECT_GE(stats["busy"].get<int>(), 1);
  EXPECT_LE(stats["busy"].get<int>(), 20) << "the crawler kept to the server's pace";
  EXPECT_EQ(f.host.busy_retries, stats["busy"].get<int>());
  EXPECT_LE(f.host.pacer.stats().limit, 4);
  EXPECT_GE(f.host.pacer.stats().signals[int(Congestion::kBusy)], 1);
  fmt::print("busy server: {:.2f} s, {} 503s; {}\n", f.seconds, stats["busy"].get<int>(), describe(f.host));
}

TEST(IngestPace, RequestsLostInTheServerAreAskedAgain) {
  // Every 30th request waits 4 s for its answer; asked again, it comes at once.
  testing::TempDir tmp("ingest_pace_hiccup");
  write_fashion_mnist_folder((tmp / "src").string(), 20, "t10k");
  HttpServer server = HttpServer::script(kScript, {"hiccup", (tmp / "src").string()});
  HttpOptions opt;
  opt.max_per_host = 8;
  const Fetched f = fetch_all(server, image_paths(tmp / "src"), opt);
  EXPECT_EQ(f.ok, 200) << (f.errors.empty() ? "" : f.errors[0]);
  const auto stats = server_stats(server);
  EXPECT_GE(stats["hiccups"].get<int>(), 5);
  EXPECT_GE(f.host.abandoned, 5);
  EXPECT_GE(f.host.pacer.stats().signals[int(Congestion::kSlowFirstByte)], 5);
  EXPECT_LT(f.seconds, 3.5) << "a lost answer costs about a second, not the server's 4 s";
  fmt::print("hiccup server: {:.2f} s, {} held answers; {}\n", f.seconds, stats["hiccups"].get<int>(),
             describe(f.host));
}

TEST(IngestPace, ToolHelpExplainsThePace) {
  std::string help;
  ASSERT_EQ(testing::run_command(testing::test_program("imagenet_ingest") + " --help", &help), 0);
  for (const char* s : {"--start-per-host", "--per-host", "--downloads", "ceiling", "503/429", "Retry-After"})
    EXPECT_NE(help.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace incept::data

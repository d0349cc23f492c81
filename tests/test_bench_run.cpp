// benchmarks/run.sh in its CPU mode at the tiny size, as CI runs it: the CPU reference step, the
// loader on a Fashion-MNIST (or synthetic) LMDB and the ingest over HTTP really run, and what it
// writes is checked: the console table, the CSV's numbers, the chart PNG's pixels and the section
// spliced into a RESULTS.md whose history must come through unchanged.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "testing/http_server.h"
#include "testing/test_util.h"

namespace fs = std::filesystem;

namespace incept {
namespace {

using testing::read_file;
using testing::run_command;
using testing::TempDir;

const std::string kRunSh = std::string(INCEPT_TEST_SOURCE_DIR) + "/../benchmarks/run.sh";
const std::string kHistory =
    "# Measured results\n\nEvery figure names the machine.\n\n## Session 3 (2026-11-30)\n\n| run | 13,618 "
    "|\n";

// Cells of one CSV line (quotes as bench_report writes them).
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      out.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

// Pixels within 12 of an RGB colour.
int pixels_of(const cv::Mat& bgr, int r, int g, int b) {
  int n = 0;
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x) {
      const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
      n += std::abs(p[2] - r) <= 12 && std::abs(p[1] - g) <= 12 && std::abs(p[0] - b) <= 12;
    }
  return n;
}

TEST(BenchRun, HelpAndBadOptions) {
  std::string out;
  ASSERT_EQ(run_command(kRunSh + " --help", &out), 0) << out;
  for (const char* s : {"--only", "--cpu", "--quick", "--iters", "--budget", "--lmdb-per-class", "--peers",
                        "--out", "--results", "--report", "60-epoch"})
    EXPECT_NE(out.find(s), std::string::npos) << s;
  EXPECT_EQ(run_command(kRunSh + " --only incept,gpu", &out), 2) << out;
  EXPECT_NE(out.find("'gpu' is not incept, pytorch, loader or ingest"), std::string::npos) << out;
}

TEST(BenchRun, CpuModeWritesTheTableCsvChartAndResultsSection) {
  TempDir tmp("incept_bench_run");
  const fs::path out = tmp / "out", results = tmp / "RESULTS.md";
  std::ofstream(results) << kHistory;
  std::string log;
  const std::string cmd = kRunSh + " --cpu --tiny --out " + out.string() + " --work " +
                          (tmp / "work").string() + " --bin " + INCEPT_TEST_BIN_DIR + " --results " +
                          results.string();
  ASSERT_EQ(run_command(cmd, &log), 0) << log;

  // The console table (also table.txt): every CPU part, the projection and DIGITS' figure.
  const std::string table = read_file(out / "table.txt");
  for (const char* s :
       {"no GPU:", "CPU reference step", "training loader, 1 decode thread", "imagenet_ingest over HTTP",
        "60-epoch job", "29.0 h", "NVIDIA Caffe", "note: pytorch: not run (CPU mode"})
    EXPECT_NE(table.find(s), std::string::npos) << s << "\n" << table;
  EXPECT_NE(log.find("CPU reference step"), std::string::npos) << log;

  // The CSV: a measured rate (and a projection) on every row run.sh produced.
  std::istringstream csv(read_file(out / "results.csv"));
  std::string line;
  ASSERT_TRUE(std::getline(csv, line));
  const std::vector<std::string> head = cells(line);
  ASSERT_EQ(head[0], "kind");
  const auto col = [&](const char* name) { return std::find(head.begin(), head.end(), name) - head.begin(); };
  std::map<std::string, int> kinds;
  while (std::getline(csv, line)) {
    const std::vector<std::string> c = cells(line);
    ASSERT_EQ(c.size(), head.size()) << line;
    ++kinds[c[0]];
    if (c[0] == "step" || c[0] == "loader" || c[0] == "ingest") {
      EXPECT_GT(std::stod(c[col("img_per_s")]), 0) << line;
    }
    if (c[0] == "step") {
      EXPECT_EQ(c[col("gpus")], "0");
      EXPECT_GT(std::stod(c[col("ms_per_step")]), 0);
      EXPECT_GT(std::stod(c[col("job_hours")]), 24) << "a CPU takes days";
    }
  }
  EXPECT_EQ(kinds["step"], 1);
  EXPECT_EQ(kinds["loader"], 2);  // 1 and 2 decode threads
  EXPECT_EQ(kinds["ingest"], 1);
  EXPECT_EQ(kinds["reference"], 3);

  // The chart: drawn at 1200 px, incept's colour (legend and bar) and the P100 references' grey.
  const cv::Mat png = cv::imread((out / "chart.png").string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(png.empty());
  EXPECT_EQ(png.cols, 1200);
  EXPECT_GT(png.rows, 200);
  EXPECT_GE(pixels_of(png, 0x1f, 0x77, 0xb4), 100);
  EXPECT_GE(pixels_of(png, 0x7f, 0x7f, 0x7f), 500);

  // RESULTS.md: the section at the top between the markers, the history unchanged after it, the
  // chart beside it; the same section again from the output folder changes nothing.
  const std::string md = read_file(results);
  ASSERT_EQ(md.rfind(kHistory.substr(0, kHistory.find("## Session")), 0), 0u) << md;
  const auto begin = md.find("<!-- run.sh:begin -->"), end = md.find("<!-- run.sh:end -->");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  EXPECT_NE(md.substr(begin, end - begin).find("CPU reference step"), std::string::npos);
  EXPECT_EQ(md.substr(md.find("## Session 3")), kHistory.substr(kHistory.find("## Session 3")));
  EXPECT_TRUE(fs::exists(tmp / "results_chart.png"));
  ASSERT_EQ(run_command(kRunSh + " --bin " + INCEPT_TEST_BIN_DIR + " --results " + results.string() +
                            " --report " + out.string(),
                        &log),
            0)
      << log;
  EXPECT_EQ(read_file(results), md);
}

}  // namespace
}  // namespace incept

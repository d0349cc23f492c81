// The metrics files and the training report: real files written and read back (round trip,
// resume truncation, torn lines, a writer killed with SIGKILL), report.html parsed as XML
// (one <title> per plotted point), report.png decoded by OpenCV (size, series colours
// present), and the edge cases: no points, no validation, one point, NaN/inf, accuracies at
// 0 and 1, step drops of the learning rate, many epochs.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>

#include "engine/chart.h"
#include "engine/check.h"
#include "engine/metrics.h"
#include "engine/report.h"
#include "testing/test_util.h"

namespace incept {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

// ---- a GoogLeNet-like run: 3 losses (train and val), 6 val accuracies, step LR at 33/66/99 % ----

const std::vector<std::string> kLosses = {"loss1/loss", "loss2/loss", "loss"};
const std::vector<std::string> kAccuracies = {"loss1/accuracy", "loss1/accuracy-top5",
                                              "loss2/accuracy", "loss2/accuracy-top5",
                                              "accuracy",       "accuracy-top5"};

std::vector<std::string> googlenet_columns() {
  std::vector<std::string> c = kLosses;
  c.insert(c.end(), kAccuracies.begin(), kAccuracies.end());
  return c;
}

struct SampleRun {
  std::vector<MetricPoint> points;
  std::int64_t max_iter = 0;
};

SampleRun googlenet_run(int epochs, int iters_per_epoch, int display, std::uint64_t seed = 1) {
  SampleRun run;
  run.max_iter = static_cast<std::int64_t>(epochs) * iters_per_epoch;
  const std::int64_t stepsize = std::llround(0.33 * static_cast<double>(run.max_iter));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0, 1);
  auto lr_at = [&](std::int64_t it) { return 0.01 * std::pow(0.1, static_cast<double>(it / stepsize)); };
  // The mean loss of the final head: falls with training, and drops after each LR drop.
  auto mean_loss = [&](std::int64_t it) {
    const double t = static_cast<double>(it) / static_cast<double>(run.max_iter);
    const double stage = static_cast<double>(it / stepsize);
    return (0.42 + 1.88 * std::exp(-t / 0.12)) * std::pow(0.78, stage);
  };
  auto head_factor = [](std::size_t h) { return 1.0 + 0.12 * static_cast<double>(2 - h); };
  double wall = 0;
  for (std::int64_t it = 0; it <= run.max_iter; ++it) {
    const double epoch = static_cast<double>(it) / iters_per_epoch;
    if (it % iters_per_epoch == 0) {  // validation before training and after every epoch
      MetricPoint v{"val", it, epoch, lr_at(std::min(it, run.max_iter - 1)), 0, wall, {}};
      std::vector<double> loss(3);
      for (std::size_t h = 0; h < 3; ++h) {
        loss[h] = mean_loss(it) * head_factor(h) * 1.06 + 0.01 * noise(rng);
        v.values.emplace_back(kLosses[h], loss[h]);
      }
      for (std::size_t h = 0; h < 3; ++h) {
        const double top1 = 0.1 + 0.9 * std::pow(std::max(0.0, 1 - loss[h] / 2.4), 0.8);
        v.values.emplace_back(kAccuracies[2 * h], top1);
        v.values.emplace_back(kAccuracies[2 * h + 1], 1 - std::pow(1 - top1, 2.5));
      }
      run.points.push_back(v);
    }
    if (it < run.max_iter && it % display == 0) {
      const double lr = lr_at(it);
      MetricPoint p{"train", it, epoch, lr, 2400 + 50 * noise(rng), wall, {}};
      for (std::size_t h = 0; h < 3; ++h)
        p.values.emplace_back(kLosses[h],
                              std::max(0.01, mean_loss(it) * head_factor(h) * (1 + 3 * lr * noise(rng))));
      run.points.push_back(p);
    }
    wall += 0.05;
  }
  return run;
}

ReportInfo googlenet_info(const SampleRun& run, double epochs) {
  ReportInfo info;
  info.job_name = "fashion-googlenet";
  info.network = "GoogLeNet";
  info.dataset = "/data/fashion-mnist-256";
  info.device = "1 x NVIDIA H200";
  info.precision = "bf16";
  info.epochs = epochs;
  info.max_iter = run.max_iter;
  info.settings = {
      {"base_lr", "0.01"}, {"lr_policy", "step"}, {"stepsize", "33 % <of training>"}, {"gamma", "0.1"}};
  info.last_snapshot = fmt::format("snapshot_iter_{}.caffemodel", run.max_iter);
  return info;
}

// ---- a small XML well-formedness check --------------------------------------------------

struct XmlStats {
  std::map<std::string, int> elements;        // element name -> count
  std::map<std::string, int> child_of;        // "parent>child" -> count
  std::vector<std::string> titles;            // text of every <title> inside a circle
  std::vector<std::string> attribute_values;  // every attribute value (unescaped)
};

std::string unescape(const std::string& s, const std::string& where) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') throw std::runtime_error("raw '<' in " + where);
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const std::size_t semi = s.find(';', i);
    if (semi == std::string::npos) throw std::runtime_error("unterminated entity in " + where);
    const std::string ent = s.substr(i + 1, semi - i - 1);
    static const std::map<std::string, char> named = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    if (named.count(ent)) {
      out += named.at(ent);
    } else if (ent.size() > 1 && ent[0] == '#') {
      out += static_cast<char>(std::stoi(ent.substr(1)));
    } else {
      throw std::runtime_error("unknown entity &" + ent + "; in " + where);
    }
    i = semi;
  }
  return out;
}

// Throws std::runtime_error where `doc` is not well-formed XML (one root element).
XmlStats parse_xml(const std::string& doc) {
  XmlStats st;
  std::vector<std::string> stack;
  std::size_t i = 0, roots = 0;
  std::string text;
  auto fail = [&](const std::string& why) {
    throw std::runtime_error(fmt::format("XML error at offset {}: {}", i, why));
  };
  auto is_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == ':' || c == '_';
  };
  while (i < doc.size()) {
    if (doc[i] != '<') {
      const std::size_t next = doc.find('<', i);
      text = doc.substr(i, next - i);
      unescape(text, "text");
      if (stack.empty() && text.find_first_not_of(" \n\r\t") != std::string::npos)
        fail("text outside the root");
      i = next == std::string::npos ? doc.size() : next;
      continue;
    }
    if (doc.compare(i, 4, "<!--") == 0) {
      i = doc.find("-->", i);
      if (i == std::string::npos) fail("unterminated comment");
      i += 3;
    } else if (doc.compare(i, 9, "<!DOCTYPE") == 0) {
      if (!stack.empty() || roots) fail("DOCTYPE inside the document");
      i = doc.find('>', i) + 1;
    } else if (doc.compare(i, 2, "</") == 0) {
      std::size_t j = i + 2;
      while (j < doc.size() && is_name(doc[j])) ++j;
      const std::string name = doc.substr(i + 2, j - i - 2);
      if (stack.empty() || stack.back() != name)
        fail("</" + name + "> closes <" + (stack.empty() ? "" : stack.back()) + ">");
      if (name == "title" && stack.size() >= 2 && stack[stack.size() - 2] == "circle")
        st.titles.push_back(unescape(text, "title"));
      stack.pop_back();
      if (doc[j] != '>') fail("bad end tag");
      i = j + 1;
    } else {
      std::size_t j = i + 1;
      while (j < doc.size() && is_name(doc[j])) ++j;
      const std::string name = doc.substr(i + 1, j - i - 1);
      if (name.empty()) fail("empty element name");
      if (stack.empty() && roots++) fail("a second root element");
      st.elements[name]++;
      if (!stack.empty()) st.child_of[stack.back() + ">" + name]++;
      std::map<std::string, int> seen;
      for (;;) {
        while (j < doc.size() && std::isspace(static_cast<unsigned char>(doc[j]))) ++j;
        if (doc.compare(j, 2, "/>") == 0) {
          i = j + 2;
          break;
        }
        if (doc[j] == '>') {
          stack.push_back(name);
          i = j + 1;
          break;
        }
        std::size_t k = j;
        while (k < doc.size() && is_name(doc[k])) ++k;
        const std::string attr = doc.substr(j, k - j);
        if (attr.empty() || doc[k] != '=' || (doc[k + 1] != '"' && doc[k + 1] != '\''))
          fail("bad attribute in <" + name + ">");
        if (seen[attr]++) fail("attribute " + attr + " twice in <" + name + ">");
        const std::size_t end = doc.find(doc[k + 1], k + 2);
        if (end == std::string::npos) fail("unterminated attribute");
        st.attribute_values.push_back(unescape(doc.substr(k + 2, end - k - 2), "attribute " + attr));
        j = end + 1;
      }
      text.clear();
    }
  }
  if (!stack.empty()) fail("<" + stack.back() + "> is not closed");
  if (roots != 1) fail("no root element");
  return st;
}

// ---- PNG checks ----------------------------------------------------------------------------

// Pixels within `tol` (per channel) of an RGB colour.
int pixels_near(const cv::Mat& bgr, std::uint32_t rgb, int tol = 10) {
  const int r = (rgb >> 16) & 255, g = (rgb >> 8) & 255, b = rgb & 255;
  int n = 0;
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x) {
      const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
      if (std::abs(p[2] - r) <= tol && std::abs(p[1] - g) <= tol && std::abs(p[0] - b) <= tol) ++n;
    }
  return n;
}

void expect_valid_png(const fs::path& path) {
  const std::string bytes = testing::read_file(path);
  ASSERT_GT(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto be32 = [&](std::size_t o) {
    return (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[o])) << 24) |
           (static_cast<unsigned char>(bytes[o + 1]) << 16) |
           (static_cast<unsigned char>(bytes[o + 2]) << 8) | static_cast<unsigned char>(bytes[o + 3]);
  };
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(16), static_cast<std::uint32_t>(kReportPngWidth));
  EXPECT_EQ(be32(20), static_cast<std::uint32_t>(kReportPngHeight));
  const cv::Mat img = cv::imread(path.string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty()) << "OpenCV cannot read " << path;
  EXPECT_EQ(img.cols, kReportPngWidth);
  EXPECT_EQ(img.rows, kReportPngHeight);
  // Not blank: dark text and lines on the white page.
  EXPECT_GT(pixels_near(img, 0x222222, 40), 500);
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
}

// With INCEPT_REPORT_SAMPLE_DIR set, the report is copied to $INCEPT_REPORT_SAMPLE_DIR/<name>.{png,html}
// for a person to look at.
void keep_sample(const fs::path& dir, const std::string& name) {
  const char* keep = std::getenv("INCEPT_REPORT_SAMPLE_DIR");
  if (!keep) return;
  fs::create_directories(keep);
  for (const char* ext : {".png", ".html"})
    fs::copy_file(dir / (std::string("report") + ext), fs::path(keep) / (name + ext),
                  fs::copy_options::overwrite_existing);
}

// Writes the report and checks both files; returns the HTML's XML statistics.
XmlStats write_and_check(const fs::path& dir, const std::vector<MetricPoint>& points, const ReportInfo& info,
                         const std::string& sample_name) {
  write_report(dir.string(), points, info);
  keep_sample(dir, sample_name);
  expect_valid_png(dir / "report.png");
  const std::string html = testing::read_file(dir / "report.html");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);  // nothing loaded from anywhere
  XmlStats st;
  try {
    st = parse_xml(html);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  EXPECT_EQ(st.elements["svg"], 2);
  for (const std::string& v : st.attribute_values) {  // no NaN or inf coordinates
    EXPECT_EQ(v.find("nan"), std::string::npos) << v;
    EXPECT_EQ(v.find("inf"), std::string::npos) << v;
  }
  return st;
}

}  // namespace

// ---- metrics files -----------------------------------------------------------------------

void expect_same_point(const MetricPoint& a, const MetricPoint& b) {
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.iteration, b.iteration);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.images_per_s, b.images_per_s);
  EXPECT_EQ(a.wall_s, b.wall_s);
  ASSERT_EQ(a.values.size(), b.values.size());
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    EXPECT_EQ(a.values[i].first, b.values[i].first);
    if (std::isnan(a.values[i].second)) {
      EXPECT_TRUE(std::isnan(b.values[i].second));
    } else {
      EXPECT_EQ(a.values[i].second, b.values[i].second);  // exact: shortest round-trip text
    }
  }
}

TEST(Metrics, FilesRoundTripExactly) {
  TempDir dir;
  const SampleRun run = googlenet_run(2, 50, 5);
  {
    MetricsLog log(dir.path().string(), googlenet_columns());
    for (const auto& p : run.points) log.append(p);
    EXPECT_EQ(log.points().size(), run.points.size());
  }
  const auto csv = lines_of(testing::read_file(dir / "metrics.csv"));
  ASSERT_EQ(csv.size(), run.points.size() + 1);
  EXPECT_EQ(csv[0],
            "phase,epoch,iteration,lr,images_per_s,wall_s,loss1/loss,loss2/loss,loss,loss1/accuracy,"
            "loss1/accuracy-top5,loss2/accuracy,loss2/accuracy-top5,accuracy,accuracy-top5");
  // The first point is the validation before training; the second a train point whose
  // accuracy cells are empty.
  EXPECT_EQ(csv[1].rfind("val,0,0,0.01,0,0,", 0), 0u) << csv[1];
  EXPECT_EQ(csv[2].rfind("train,0,0,0.01,", 0), 0u) << csv[2];
  EXPECT_EQ(csv[2].substr(csv[2].size() - 6), ",,,,,,") << csv[2];
  const auto jsonl = lines_of(testing::read_file(dir / "metrics.jsonl"));
  ASSERT_EQ(jsonl.size(), run.points.size());
  const auto j = nlohmann::json::parse(jsonl[0]);
  EXPECT_EQ(j["phase"], "val");
  EXPECT_EQ(j["iteration"], 0);
  EXPECT_EQ(j["values"].size(), 9u);
  EXPECT_DOUBLE_EQ(j["values"]["accuracy"].get<double>(), run.points[0].values[7].second);

  MetricsLog back(dir.path().string(), googlenet_columns(), run.max_iter);
  ASSERT_EQ(back.points().size(), run.points.size());
  for (std::size_t i = 0; i < run.points.size(); ++i) expect_same_point(run.points[i], back.points()[i]);
}

TEST(Metrics, ResumeDropsThePointsAfterTheSnapshot) {
  TempDir dir;
  const SampleRun run = googlenet_run(4, 50, 10);
  {
    MetricsLog log(dir.path().string(), googlenet_columns());
    for (const auto& p : run.points) log.append(p);
  }
  const std::int64_t snapshot = 100;
  std::size_t kept = 0;
  for (const auto& p : run.points) kept += p.iteration <= snapshot;
  {
    MetricsLog log(dir.path().string(), googlenet_columns(), snapshot);
    ASSERT_EQ(log.points().size(), kept);
    for (const auto& p : log.points()) EXPECT_LE(p.iteration, snapshot);
    EXPECT_EQ(lines_of(testing::read_file(dir / "metrics.csv")).size(), kept + 1);
    EXPECT_EQ(lines_of(testing::read_file(dir / "metrics.jsonl")).size(), kept);
    EXPECT_FALSE(fs::exists(dir / "metrics.csv.tmp"));
    // The resumed job appends the same iterations again, without duplicates.
    for (const auto& p : run.points)
      if (p.iteration > snapshot) log.append(p);
  }
  MetricsLog again(dir.path().string(), googlenet_columns(), run.max_iter);
  ASSERT_EQ(again.points().size(), run.points.size());
  for (std::size_t i = 0; i < run.points.size(); ++i) expect_same_point(run.points[i], again.points()[i]);
  EXPECT_EQ(lines_of(testing::read_file(dir / "metrics.csv")).size(), run.points.size() + 1);
}

TEST(Metrics, NewJobRefusesExistingFilesAndResumeChecksTheHeader) {
  TempDir dir;
  { MetricsLog log(dir.path().string(), {"loss", "accuracy"}); }
  try {
    MetricsLog log(dir.path().string(), {"loss", "accuracy"});
    FAIL() << "a new job over existing metrics must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  try {
    MetricsLog log(dir.path().string(), googlenet_columns(), 0);
    FAIL() << "a header mismatch must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.csv has the columns"), std::string::npos) << e.what();
  }
  // Resuming a job whose metrics files are gone starts them afresh.
  TempDir empty;
  MetricsLog fresh(empty.path().string(), {"loss"}, 500);
  EXPECT_TRUE(fresh.points().empty());
  EXPECT_EQ(testing::read_file(empty / "metrics.csv"), "phase,epoch,iteration,lr,images_per_s,wall_s,loss\n");
}

TEST(Metrics, UnknownValueIsRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  MetricsLog log(dir.path().string(), {"loss"});
  EXPECT_THROW(log.append(MetricPoint{"train", 1, 0.1, 0.01, 0, 1, {{"loss", 1}, {"bogus", 2}}}), Error);
  EXPECT_TRUE(log.points().empty());
  EXPECT_EQ(testing::read_file(dir / "metrics.jsonl"), "");
  EXPECT_EQ(lines_of(testing::read_file(dir / "metrics.csv")).size(), 1u);
}

TEST(Metrics, NonFiniteValuesAndQuotedNamesSurvive) {
  TempDir dir;
  const std::vector<std::string> cols = {"loss", "odd,name \"x\""};
  const MetricPoint p{"train", 7, 0.5, 1e-5, 0, 3.25, {{"loss", kNaN}, {"odd,name \"x\"", 0.125}}};
  const MetricPoint q{"val", 8, 0.5, 1e-5, 0, 3.5, {{"loss", std::numeric_limits<double>::infinity()}}};
  {
    MetricsLog log(dir.path().string(), cols);
    log.append(p);
    log.append(q);
  }
  const auto csv = lines_of(testing::read_file(dir / "metrics.csv"));
  EXPECT_EQ(csv[0], "phase,epoch,iteration,lr,images_per_s,wall_s,loss,\"odd,name \"\"x\"\"\"");
  EXPECT_EQ(csv[1], "train,0.5,7,1e-05,0,3.25,nan,0.125");
  EXPECT_EQ(csv[2], "val,0.5,8,1e-05,0,3.5,inf,");
  MetricsLog back(dir.path().string(), cols, 100);
  ASSERT_EQ(back.points().size(), 2u);
  expect_same_point(p, back.points()[0]);
  // JSON has no inf: the JSONL keeps it as null, read back as NaN (not drawn either way).
  EXPECT_TRUE(std::isnan(back.points()[1].values[0].second));
}

TEST(Metrics, TornLastLineIsDropped) {
  TempDir dir;
  const SampleRun run = googlenet_run(1, 20, 5);
  {
    MetricsLog log(dir.path().string(), googlenet_columns());
    for (const auto& p : run.points) log.append(p);
  }
  {
    std::ofstream(dir / "metrics.csv", std::ios::app) << "train,0.9,18,0.01,23";
    std::ofstream(dir / "metrics.jsonl", std::ios::app) << "{\"phase\":\"train\",\"iter";
  }
  MetricsLog log(dir.path().string(), googlenet_columns(), 1000);
  EXPECT_EQ(log.points().size(), run.points.size());
  EXPECT_EQ(testing::read_file(dir / "metrics.jsonl").back(), '\n');
}

// kill -9 right after an append loses nothing: every append is already in the files.
TEST(Metrics, SigkillLosesNothingAppended) {
  TempDir dir;
  const SampleRun run = googlenet_run(1, 40, 2);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    MetricsLog log(dir.path().string(), googlenet_columns());
    for (const auto& p : run.points) log.append(p);
    raise(SIGKILL);  // no destructors, no flush at exit
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  MetricsLog back(dir.path().string(), googlenet_columns(), run.max_iter);
  ASSERT_EQ(back.points().size(), run.points.size());
  for (std::size_t i = 0; i < run.points.size(); ++i) expect_same_point(run.points[i], back.points()[i]);
}

// ---- summary and ticks ------------------------------------------------------------------------

TEST(Report, TopNamesAndSummary) {
  EXPECT_TRUE(is_accuracy_top("loss1/accuracy"));
  EXPECT_TRUE(is_accuracy_top("accuracy-top5"));
  EXPECT_TRUE(is_accuracy_top("loss3/top-1"));
  EXPECT_FALSE(is_accuracy_top("loss2/loss"));
  EXPECT_TRUE(is_top5_top("loss3/top-5"));
  EXPECT_FALSE(is_top5_top("accuracy"));
  EXPECT_EQ(top_head("loss1/accuracy-top5"), "loss1");
  EXPECT_EQ(top_head("accuracy"), "");

  const SampleRun run = googlenet_run(10, 40, 5);
  const auto heads = summarize_accuracy(run.points);
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[0].head, "");  // the net's own classifier first
  EXPECT_EQ(heads[0].top1, "accuracy");
  EXPECT_EQ(heads[0].top5, "accuracy-top5");
  EXPECT_EQ(heads[0].loss, "loss");
  EXPECT_EQ(heads[1].head, "loss1");
  EXPECT_EQ(heads[2].head, "loss2");
  const MetricPoint& last = run.points.back();
  ASSERT_EQ(last.phase, "val");
  EXPECT_EQ(heads[0].final_top1, last.values[7].second);
  EXPECT_EQ(heads[0].final_top5, last.values[8].second);
  EXPECT_EQ(heads[0].final_loss, last.values[2].second);
  EXPECT_EQ(heads[0].final_iteration, run.max_iter);
  EXPECT_GT(heads[0].final_top1, 0.85);  // the run is realistic: GoogLeNet on Fashion-MNIST
  EXPECT_GE(heads[0].best_top1, heads[0].final_top1);
  EXPECT_GE(heads[0].best_top1_epoch, 6.0);

  // BVLC names: the last head by name is the net's own.
  const std::vector<MetricPoint> bvlc = {
      {"val", 10, 1, 0.01, 0, 1, {{"loss1/top-1", 0.5}, {"loss3/top-1", 0.7}, {"loss3/top-5", 0.9}}}};
  const auto b = summarize_accuracy(bvlc);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].head, "loss3");
  EXPECT_EQ(b[0].final_top5, 0.9);
}

TEST(Report, Ticks) {
  const chart::Ticks t = chart::linear_ticks(0, 2.37, 6);
  EXPECT_DOUBLE_EQ(t.lo, 0);
  EXPECT_DOUBLE_EQ(t.hi, 2.5);
  EXPECT_DOUBLE_EQ(t.step, 0.5);
  EXPECT_EQ(chart::tick_label(1.5, t, false), "1.5");
  const chart::Ticks l = chart::log_ticks(1e-5, 0.01);
  ASSERT_EQ(l.values.size(), 4u);
  EXPECT_EQ(chart::tick_label(l.values[0], l, true), "1e-05");
  EXPECT_EQ(chart::tick_label(l.values[3], l, true), "0.01");
  const chart::Ticks e = chart::linear_ticks(0, 30, 10);
  EXPECT_EQ(e.values.size(), 7u);
  EXPECT_EQ(chart::tick_label(e.values[1], e, false), "5");
}

// ---- the report ---------------------------------------------------------------------------

TEST(Report, GoogLeNetRun) {
  TempDir dir;
  const SampleRun run = googlenet_run(30, 120, 20);
  const ReportInfo info = googlenet_info(run, 30);
  const XmlStats st = write_and_check(dir.path(), run.points, info, "googlenet");

  // One hover title per plotted metric value (no culling needed at 180 train points), plus the
  // learning-rate points.
  std::size_t values = 0;
  for (const auto& p : run.points) values += p.values.size();
  EXPECT_GE(st.titles.size(), values);
  EXPECT_EQ(st.child_of.at("circle>title"), static_cast<int>(st.titles.size()));
  std::map<std::string, int> title_set;
  for (const auto& t : st.titles) title_set[t]++;
  for (const auto& p : run.points)
    if (p.phase == "val")
      for (const auto& [name, v] : p.values) {
        const std::string value =
            is_accuracy_top(name) ? fmt::format("{:.2f} %", 100 * v) : fmt::format("{:.4f}", v);
        const std::string t =
            fmt::format("{} (val)\nepoch {}, iteration {}\n{}", name, p.iteration / 120, p.iteration, value);
        EXPECT_EQ(title_set[t], 1) << t;
      }
  // Both sides of every learning-rate drop (at 33, 66 and 99 % of 3600 iterations; a train
  // point every 20).
  for (std::int64_t drop : {1188, 2376, 3564})
    for (std::int64_t it : {drop / 20 * 20, drop / 20 * 20 + 20}) {
      bool found = false;
      for (const auto& t : st.titles)
        found |= t.find(fmt::format("iteration {}\n", it)) != std::string::npos &&
                 t.rfind("learning rate", 0) == 0;
      EXPECT_TRUE(found) << "learning rate at iteration " << it;
    }

  const std::string html = testing::read_file(dir / "report.html");
  const auto heads = summarize_accuracy(run.points);
  EXPECT_NE(html.find(fmt::format("top-1 {:.2f} %", 100 * heads[0].final_top1)), std::string::npos);
  EXPECT_NE(html.find("snapshot_iter_3600.caffemodel"), std::string::npos);
  EXPECT_NE(html.find("33 % &lt;of training&gt;"), std::string::npos);  // settings escaped
  for (const char* series :
       {"loss1/loss (train)", "loss (val)", "loss2/accuracy-top5 (val)", "accuracy (val)"})
    EXPECT_NE(html.find(series), std::string::npos) << series;

  // The PNG shows every val series' colour (solid lines and markers) and the learning rate.
  const cv::Mat img = cv::imread((dir / "report.png").string(), cv::IMREAD_COLOR);
  for (std::uint32_t c : {0x1f77b4u, 0xff7f0eu, 0x2ca02cu, 0xd62728u, 0x9467bdu, 0x8c564bu})
    EXPECT_GT(pixels_near(img, c), 100) << fmt::format("colour {:06x}", c);
  // The learning-rate graph (the bottom 230 rows) is drawn in blue.
  EXPECT_GT(pixels_near(img(cv::Rect(0, kReportPngHeight - 230, kReportPngWidth, 230)), 0x1f77b4), 300);
}

TEST(Report, ManyEpochsAreCulledButKeepEveryValPoint) {
  TempDir dir;
  const SampleRun run = googlenet_run(200, 400, 5);  // 16,000 train points per loss
  const XmlStats st = write_and_check(dir.path(), run.points, googlenet_info(run, 200), "many_epochs");
  std::map<std::string, std::size_t> per_series;
  for (const auto& t : st.titles) per_series[t.substr(0, t.find('\n'))]++;
  for (const auto& name : kLosses) {
    EXPECT_LE(per_series[name + " (train)"], kReportMaxTrainPoints + 1) << name;
    EXPECT_GE(per_series[name + " (train)"], kReportMaxTrainPoints / 2) << name;
    EXPECT_EQ(per_series[name + " (val)"], 201u) << name;
  }
  for (const auto& name : kAccuracies) EXPECT_EQ(per_series[name + " (val)"], 201u) << name;
  EXPECT_LT(fs::file_size(dir / "report.html"), 3u << 20);
}

TEST(Report, NoPointsNoValidationAndASinglePoint) {
  ReportInfo info;
  info.job_name = "empty";
  {
    TempDir dir;
    const XmlStats st = write_and_check(dir.path(), {}, info, "no_points");
    EXPECT_TRUE(st.titles.empty());
    EXPECT_NE(testing::read_file(dir / "report.html").find("no data yet"), std::string::npos);
  }
  {
    TempDir dir;
    const SampleRun run = googlenet_run(1, 100, 10);
    std::vector<MetricPoint> train;
    for (const auto& p : run.points)
      if (p.phase == "train") train.push_back(p);
    const XmlStats st = write_and_check(dir.path(), train, info, "no_val");
    EXPECT_GE(st.titles.size(), train.size() * 3);
    EXPECT_NE(testing::read_file(dir / "report.html").find("validation: none yet"), std::string::npos);
  }
  {
    TempDir dir;
    const std::vector<MetricPoint> one = {{"val", 0, 0, 0.01, 0, 0, {{"loss", 2.3}, {"accuracy", 0.1}}}};
    const XmlStats st = write_and_check(dir.path(), one, info, "one_point");
    EXPECT_GE(st.titles.size(), 3u);  // loss, accuracy, learning rate
    const cv::Mat img = cv::imread((dir / "report.png").string(), cv::IMREAD_COLOR);
    EXPECT_GT(pixels_near(img, 0x1f77b4), 10);  // the single loss marker (and the lr one)
    EXPECT_GT(pixels_near(img, 0xd62728), 10);  // the single accuracy marker
  }
}

TEST(Report, NonFiniteValuesAreSkippedAndAccuracyExtremesShow) {
  TempDir dir;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<MetricPoint> pts;
  for (int i = 0; i <= 20; ++i) {
    const double e = i / 10.0;
    double loss = 2.0 - 0.05 * i;
    if (i == 7) loss = kNaN;
    if (i == 8) loss = inf;
    if (i == 9) loss = -inf;
    pts.push_back({"train", i * 10, e, i == 12 ? kNaN : 0.01, 100, i * 1.0, {{"loss", loss}}});
    if (i % 5 == 0)
      pts.push_back(
          {"val",
           i * 10,
           e,
           0.01,
           0,
           i * 1.0,
           {{"loss", i == 10 ? kNaN : loss}, {"accuracy", i == 0 ? 0.0 : 1.0}, {"accuracy-top5", 1.0}}});
  }
  const XmlStats st = write_and_check(dir.path(), pts, ReportInfo{}, "non_finite");
  int nan_titles = 0, zero = 0, hundred = 0;
  for (const auto& t : st.titles) {
    nan_titles += t.find("nan") != std::string::npos || t.find("inf") != std::string::npos;
    zero += t.rfind("accuracy (val)", 0) == 0 && t.find("\n0.00 %") != std::string::npos;
    hundred += t.rfind("accuracy (val)", 0) == 0 && t.find("\n100.00 %") != std::string::npos;
  }
  EXPECT_EQ(nan_titles, 0);
  EXPECT_EQ(zero, 1);
  EXPECT_EQ(hundred, 4);
  const auto heads = summarize_accuracy(pts);
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].best_top1, 1.0);
  EXPECT_DOUBLE_EQ(heads[0].best_top1_epoch, 0.5);
}

TEST(Report, ReplacesFilesAtomically) {
  TempDir dir;
  const SampleRun run = googlenet_run(2, 50, 5);
  write_report(dir.path().string(), run.points, googlenet_info(run, 2));
  const auto first = fs::file_size(dir / "report.png");
  write_report(dir.path().string(), run.points, googlenet_info(run, 2));
  EXPECT_EQ(fs::file_size(dir / "report.png"), first);
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
  EXPECT_THROW(write_report((dir / "missing" / "dir").string(), run.points, ReportInfo{}), Error);
}

}  // namespace incept

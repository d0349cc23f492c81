// The benchmark report of benchmarks/run.sh: the bar chart (engine/bar_chart.h) and the table
// (engine/bench_results.h) from each part's output, as the programs write it (the peer JSON is a
// trimmed copy of a real peer_pytorch.py run on two H200s).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "benchmarks/trace/trace_summary.h"
#include "engine/bar_chart.h"
#include "engine/bench_results.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using testing::error_of;
using testing::TempDir;

// Records what a chart draws.
struct Recorder : chart::Canvas {
  struct Rect {
    double x, y, w, h;
    chart::Colour fill;
  };
  std::vector<Rect> rects;
  std::vector<std::string> texts;
  void polyline(const std::vector<std::pair<double, double>>&, const chart::Stroke&) override {}
  void rect(double x, double y, double w, double h, const chart::Colour* fill,
            const chart::Stroke*) override {
    if (fill) rects.push_back({x, y, w, h, *fill});
  }
  void marker(double, double, double, chart::Colour, bool, const std::string&) override {}
  void text(double, double, const std::string& s, double, chart::Anchor, chart::Colour, bool, bool) override {
    texts.push_back(s);
  }
  void push_clip(double, double, double, double) override {}
  void pop_clip() override {}
  bool has_text(const std::string& s) const {
    return std::find(texts.begin(), texts.end(), s) != texts.end();
  }
};

chart::BarChart two_groups() {
  chart::BarChart c;
  c.title = "t";
  c.value_label = "images/s";
  c.palette = {{"incept", chart::colour_from_hex(0x1f77b4)}, {"PyTorch", chart::colour_from_hex(0xff7f0e)}};
  c.groups = {{"1 GPU", {{"a", "incept", 12000, ""}, {"b", "PyTorch", 6000, "6k"}}},
              {"2 GPUs", {{"c", "other", 3000, ""}, {"d", "incept", NAN, ""}}}};
  return c;
}

// bench_train_step --trace: a step's span, busy time (overlaps counted once, gaps not at all)
// and the sum of durations, whatever order the records come in.
TEST(TraceSummary, CountsOverlapsOnceAndGapsNotAtAll) {
  using bench::TraceRecord;
  auto rec = [](std::uint32_t stream, std::uint64_t start_us, std::uint64_t end_us) {
    TraceRecord r;
    r.kind = "kernel";
    r.stream = stream;
    r.start_ns = start_us * 1000;
    r.end_ns = end_us * 1000;
    return r;
  };
  // 100-110 alone, then 115-140 on one stream overlapping 120-130 and 125-150 on two others,
  // a gap to 160, then 160-170 inside which 162-165 runs: busy 10 + 35 + 10 = 55 us of 70.
  const std::vector<TraceRecord> step = {rec(3, 160, 170), rec(1, 115, 140), rec(1, 100, 110),
                                         rec(2, 120, 130), rec(4, 125, 150), rec(2, 162, 165)};
  const bench::TraceSummary s = bench::summarize(step);
  EXPECT_DOUBLE_EQ(s.span_us, 70);
  EXPECT_DOUBLE_EQ(s.busy_us, 55);
  EXPECT_DOUBLE_EQ(s.sum_us, 10 + 25 + 10 + 25 + 10 + 3);
  EXPECT_EQ(s.records, 6);
  EXPECT_EQ(s.streams, 4);
  EXPECT_EQ(bench::summarize({}).records, 0);
}

TEST(BarChart, BarsScaleWithTheirValueAndTakeTheirSeriesColour) {
  Recorder r;
  const chart::BarChart c = two_groups();
  chart::draw_bar_chart(r, 1000, c);
  // Legend swatches (12 px) first, in palette order, then the bars (14 px high).
  std::vector<Recorder::Rect> bars;
  for (const auto& x : r.rects)
    if (x.h == 14) bars.push_back(x);
  ASSERT_EQ(bars.size(), 3u);  // the NaN bar draws no rectangle, only its text
  EXPECT_NEAR(bars[0].w / bars[1].w, 2.0, 1e-9);
  EXPECT_NEAR(bars[0].w / bars[2].w, 4.0, 1e-9);
  EXPECT_EQ(bars[0].x, bars[1].x);
  EXPECT_LT(bars[0].y, bars[1].y);
  EXPECT_EQ(bars[0].fill.hex(), "#1f77b4");
  EXPECT_EQ(bars[1].fill.hex(), "#ff7f0e");
  EXPECT_NE(bars[2].fill.hex(), "#1f77b4");  // a series not in the palette takes its own colour
  EXPECT_NE(bars[2].fill.hex(), "#ff7f0e");
  for (const char* s :
       {"1 GPU", "2 GPUs", "a", "d", "12,000", "6k", "3,000", "-", "incept", "PyTorch", "other"})
    EXPECT_TRUE(r.has_text(s)) << s;
  const auto series = chart::bar_series(c);
  ASSERT_EQ(series.size(), 3u);
  EXPECT_EQ(series[0].first, "incept");
  EXPECT_EQ(series[2].first, "other");
}

TEST(BarChart, PngHasTheLaidOutSize) {
  const chart::BarChart c = two_groups();
  const std::string png = chart::bar_chart_png(c, 900);
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t(std::uint8_t(png[at])) << 24) | (std::uint32_t(std::uint8_t(png[at + 1])) << 16) |
           (std::uint32_t(std::uint8_t(png[at + 2])) << 8) | std::uint32_t(std::uint8_t(png[at + 3]));
  };
  EXPECT_EQ(be32(16), 900u);
  EXPECT_EQ(be32(20), std::uint32_t(std::ceil(chart::bar_chart_height(c, 900))));
  chart::BarChart empty;
  EXPECT_NE(error_of([&] { chart::bar_chart_png(empty, 900); }).find("no bars"), std::string::npos);
}

TEST(BarChart, ReadsItsJsonAndNamesWhatIsWrong) {
  const chart::BarChart c = chart::bar_chart_from_json(
      R"({"title": "T", "palette": [["incept", "#1f77b4"]],
          "groups": [{"title": "G", "bars": [{"label": "x", "series": "incept", "value": 5, "text": "five"},
                                             {"label": "y", "value": null}]}]})");
  EXPECT_EQ(c.title, "T");
  ASSERT_EQ(c.groups.size(), 1u);
  ASSERT_EQ(c.groups[0].bars.size(), 2u);
  EXPECT_EQ(c.groups[0].bars[0].value_text, "five");
  EXPECT_TRUE(std::isnan(c.groups[0].bars[1].value));
  EXPECT_EQ(c.palette[0].second.hex(), "#1f77b4");
  EXPECT_NE(error_of([] { chart::bar_chart_from_json("{}"); }).find("groups"), std::string::npos);
  EXPECT_NE(error_of([] { chart::bar_chart_from_json("[1,"); }).find("bar chart JSON"), std::string::npos);
  EXPECT_NE(error_of([] {
              chart::bar_chart_from_json(R"({"palette": [["a", "blue"]], "groups": []})");
            }).find("#rrggbb"),
            std::string::npos);
}

TEST(BarChart, FormatsValuesForReading) {
  EXPECT_EQ(chart::format_value(1281167), "1,281,167");
  EXPECT_EQ(chart::format_value(468), "468");
  EXPECT_EQ(chart::format_value(42), "42.0");
  EXPECT_EQ(chart::format_value(5.029), "5.03");
  EXPECT_EQ(chart::format_value(NAN), "-");
}

// ---- the table -------------------------------------------------------------------------------

TEST(BenchResults, ProjectsDigitsJobWithTheStatedFormula) {
  EXPECT_EQ(bench::kJobTrainImages + bench::kJobValImages, 1281167);
  // 60 x 960,875 / 20,750 + 60 x 320,292 / 41,700 seconds: the 54 minutes of RESULTS.md.
  const double h = bench::job_hours(20750, 41700);
  EXPECT_NEAR(h * 3600, 60.0 * 960875 / 20750 + 60.0 * 320292 / 41700, 1e-6);
  EXPECT_EQ(bench::format_duration(h), "54 min");
  EXPECT_EQ(bench::format_duration(29), "29.0 h");
  EXPECT_EQ(bench::format_duration(100), "4.2 d");
  EXPECT_TRUE(std::isnan(bench::job_hours(0, 100)));
  // NVIDIA Caffe on two P100s, validation assumed at twice the training rate.
  EXPECT_NEAR(bench::job_hours(894, 1788), 20.9, 0.05);
}

TEST(BenchResults, ReadsBenchTrainStepJsonOldAndNew) {
  bench::Results into;
  const auto rows = bench::rows_from_step_json(R"({"commit": "abc", "batch": 64,
      "versions": {"cuda_runtime": "13.0", "cudnn": "9.19.0", "nccl": "2.28.9"},
      "results": [
        {"mode": "bf16 NHWC graph x2 GPUs", "ms_per_step": 6.1, "img_per_s": 20983, "peak_mib": 1400.5,
         "arena_mib": 1200.25, "dtype": "bf16", "layout": "NHWC", "data": "synthetic", "device": "gpu", "gpus": 2,
         "batch_per_gpu": 64, "global_batch": 128},
        {"mode": "fp32 CPU reference", "ms_per_step": 400, "img_per_s": 5, "peak_mib": 211, "dtype": "fp32",
         "layout": "NCHW", "data": "synthetic", "device": "cpu", "gpus": 0, "batch_per_gpu": 2,
         "global_batch": 2}]})",
                                               "Fashion-MNIST LMDB", &into);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].gpus, 2);
  EXPECT_EQ(rows[0].global_batch, 128);
  EXPECT_NE(rows[0].what.find("all-reduce"), std::string::npos);
  EXPECT_DOUBLE_EQ(rows[0].peak_mib, 1200.25);  // the net's allocations where known
  EXPECT_EQ(rows[1].gpus, 0);
  EXPECT_NE(rows[1].what.find("CPU reference"), std::string::npos);
  EXPECT_EQ(into.meta["incept_cudnn"], "9.19.0");
  EXPECT_EQ(into.meta["incept_commit"], "abc");
  // The JSON of earlier commits: no data/device fields, memory as "mib".
  const auto old = bench::rows_from_step_json(R"({"batch": 128, "results": [
      {"mode": "bf16 NHWC graph", "ms_per_step": 9.32, "img_per_s": 13727, "mib": 1300},
      {"mode": "bf16 NHWC LMDB loader", "ms_per_step": 9.43, "img_per_s": 13574, "mib": 0}]})",
                                              "LMDB X");
  ASSERT_EQ(old.size(), 2u);
  EXPECT_EQ(old[0].data, "synthetic");
  EXPECT_EQ(old[1].data, "LMDB X");
  EXPECT_EQ(old[1].precision, "bf16");
  EXPECT_EQ(old[0].global_batch, 128);
  EXPECT_DOUBLE_EQ(old[0].peak_mib, 1300);
  EXPECT_NE(error_of([] { bench::rows_from_step_json("{}", ""); }).find("results"), std::string::npos);
}

constexpr const char* kPeerJson = R"({
 "meta": {"torch": "2.11.0+cu130", "cuda": "13.0", "gpus": 2, "gpu": "NVIDIA H200", "cudnn": 91900,
          "torchvision": "0.26.0+cu130"},
 "results": [
  {"model": "digits", "mode": "eager", "dtype": "bf16", "layout": "cl", "batch": 64, "ddp": true, "gpus": 2,
   "name": "ddp2:digits:eager:bf16:cl:b64", "ms_per_step": 28.322, "img_per_s": 4519.4, "first_step_s": 16.2,
   "peak_alloc_mib": 2530.8, "global_batch": 128, "nccl": "2.28.9"},
  {"model": "digits", "mode": "ro", "dtype": "bf16", "layout": "cl", "batch": 64, "ddp": true, "gpus": 2,
   "name": "ddp2:digits:ro:bf16:cl:b64", "ms_per_step": 9.188, "img_per_s": 13931.0, "first_step_s": 93.6,
   "peak_alloc_mib": 1533.0, "global_batch": 128, "nccl": "2.28.9"},
  {"model": "tv", "mode": "compile", "dtype": "fp32", "layout": "nchw", "batch": 128, "ddp": false, "gpus": 2,
   "name": "tv:compile:fp32:nchw:b128", "error": "timed out after 300 s"}],
 "not_run": ["digits:ro:fp32:nchw:b128"]})";

TEST(BenchResults, ReadsPeerPytorchJsonWithItsErrorsAsNotes) {
  bench::Results into;
  const auto rows = bench::rows_from_peer_json(kPeerJson, &into);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].system, "PyTorch");
  EXPECT_EQ(rows[1].what, "DIGITS GoogLeNet, torch.compile reduce-overhead, channels_last, DDP");
  EXPECT_EQ(rows[1].gpus, 2);
  EXPECT_EQ(rows[1].batch_per_gpu, 64);
  EXPECT_EQ(rows[1].global_batch, 128);
  EXPECT_EQ(rows[1].precision, "bf16 autocast");
  EXPECT_DOUBLE_EQ(rows[1].img_s, 13931.0);
  EXPECT_DOUBLE_EQ(rows[1].peak_mib, 1533.0);
  EXPECT_EQ(rows[1].note, "compile 94 s");
  EXPECT_EQ(rows[0].note, "");
  EXPECT_EQ(into.meta["torch_cudnn"], "9.19.0");
  EXPECT_EQ(into.meta["torch_nccl"], "2.28.9");
  ASSERT_EQ(into.notes.size(), 2u);
  EXPECT_NE(into.notes[0].find("tv:compile:fp32:nchw:b128: timed out"), std::string::npos);
  EXPECT_NE(into.notes[1].find("digits:ro:fp32:nchw:b128: not run"), std::string::npos);
}

TEST(BenchResults, ReadsLoaderAndIngestJson) {
  const auto loader = bench::rows_from_loader_json(R"({"batch": 128, "cpu": "EPYC", "hardware_threads": 32,
      "jpeg": "accurate", "results": [{"threads": 15, "img_per_s": 69561, "img_per_s_per_thread": 4637.4,
      "img_per_cpu_s": 4700}]})");
  ASSERT_EQ(loader.size(), 1u);
  EXPECT_EQ(loader[0].threads, 15);
  EXPECT_DOUBLE_EQ(loader[0].per_core_img_s, 4637.4);
  bench::Results into;
  const auto ingest = bench::rows_from_ingest_json(R"({"cores": 16, "cpu": "EPYC", "server": "python",
      "images": 30000, "failures": 0, "kb_per_image": 110, "img_per_s": 4548, "img_per_s_per_core": 284.25,
      "img_per_ingest_cpu_s": 316})",
                                                   &into);
  ASSERT_EQ(ingest.size(), 1u);
  EXPECT_NE(ingest[0].what.find("python3 -m http.server"), std::string::npos);
  EXPECT_NE(ingest[0].note.find("Python's server limits this rate"), std::string::npos);
  EXPECT_DOUBLE_EQ(ingest[0].per_core_img_s, 284.25);
  EXPECT_EQ(into.meta["ingest_server"], "python");
  const auto nginx = bench::rows_from_ingest_json(R"({"cores": 16, "server": "nginx", "images": 4000,
      "failures": 0, "kb_per_image": 111, "img_per_s": 5284, "img_per_s_per_core": 330.3,
      "img_per_ingest_cpu_s": 358})");
  ASSERT_EQ(nginx.size(), 1u);
  EXPECT_NE(nginx[0].what.find("from nginx"), std::string::npos);
  EXPECT_EQ(nginx[0].note.find("limits"), std::string::npos);
}

// A job at global batch 128: progress every 10 iterations, a validation pass every 30.
std::string job_jsonl() {
  std::string s;
  auto point = [&](const char* phase, int iter, double wall, double rate) {
    s += fmt::format(R"({{"phase":"{}","epoch":0,"iteration":{},"lr":0.01,"images_per_s":{},"wall_s":{},)"
                     R"("values":{{}}}})",
                     phase, iter, rate, wall) +
         "\n";
  };
  point("val", 0, 0.5, 30000);    // the first pass: warm-up, left out
  point("train", 10, 2.0, 9000);  // the first progress point: warm-up, no interval
  point("train", 20, 2.064, 0);   // 1280 images in 0.064 s: 20,000 img/s
  point("train", 30, 2.128, 0);   // 20,000
  point("val", 30, 2.2, 40000);
  point("train", 40, 2.4, 40000);  // after a validation pass: no interval
  point("train", 50, 2.4625, 0);   // 20,480
  point("train", 60, 2.5265, 0);   // 20,000
  point("val", 60, 2.6, 42000);
  return s;
}

TEST(BenchResults, TakesTheJobsTrainingRateBetweenValidationsAndItsValidationRate) {
  const bench::Row r = bench::row_from_job(
      job_jsonl(), {{"gpus", "2"}, {"global_batch", "128"}, {"precision", "bf16"}, {"peak_mib", "2050"}});
  EXPECT_EQ(r.kind, bench::Kind::kJob);
  EXPECT_NEAR(r.img_s, 20000, 1e-6);
  EXPECT_EQ(r.note, "4 training intervals, 2 validation passes");
  EXPECT_DOUBLE_EQ(r.val_img_s, 41000);
  EXPECT_EQ(r.val_source, "measured");
  EXPECT_EQ(r.batch_per_gpu, 64);
  EXPECT_NEAR(r.ms_step, 6.4, 1e-9);
  EXPECT_DOUBLE_EQ(r.peak_mib, 2050);
}

TEST(BenchResults, NamesFp32RowsByTheirGemmArithmetic) {
  // The field where the JSON has it (the LMDB-fed mode's words do not say), else the mode's words.
  const auto rows = bench::rows_from_step_json(R"({"batch": 128, "results": [
      {"mode": "fp32 NHWC graph 3xtf32", "ms_per_step": 30.6, "img_per_s": 4180, "dtype": "fp32",
       "fp32_math": "3xtf32", "device": "gpu"},
      {"mode": "fp32 NHWC LMDB loader", "ms_per_step": 31, "img_per_s": 4100, "dtype": "fp32",
       "fp32_math": "3xtf32", "data": "lmdb", "device": "gpu"},
      {"mode": "fp32 NHWC graph", "ms_per_step": 39.1, "img_per_s": 3270, "dtype": "fp32",
       "fp32_math": "strict", "device": "gpu"},
      {"mode": "fp32 NHWC graph 3xtf32", "ms_per_step": 30.6, "img_per_s": 4180},
      {"mode": "fp32 NCHW graph tf32", "ms_per_step": 20, "img_per_s": 6400},
      {"mode": "fp32 NHWC graph", "ms_per_step": 39, "img_per_s": 3280},
      {"mode": "bf16 NHWC graph", "ms_per_step": 6.9, "img_per_s": 18500, "dtype": "bf16", "fp32_math": ""},
      {"mode": "fp32 CPU reference", "ms_per_step": 400, "img_per_s": 5, "dtype": "fp32", "fp32_math": "",
       "device": "cpu"}]})",
                                               "LMDB");
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(rows[0].precision, "fp32 (3xTF32)");
  EXPECT_EQ(rows[1].precision, "fp32 (3xTF32)");
  EXPECT_EQ(rows[2].precision, "fp32 (FMA)");
  EXPECT_EQ(rows[3].precision, "fp32 (3xTF32)");  // earlier JSON: from the mode
  EXPECT_EQ(rows[4].precision, "fp32 (TF32)");
  EXPECT_EQ(rows[5].precision, "fp32 (FMA)");  // earlier JSON without a word: cuBLAS's fp32
  EXPECT_EQ(rows[6].precision, "bf16");
  EXPECT_EQ(rows[7].precision, "fp32");
  EXPECT_NE(error_of([] {
              bench::rows_from_step_json(
                  R"({"results": [{"mode": "fp32", "dtype": "fp32", "fp32_math": "fast"}]})", "");
            }).find("unknown fp32 GEMM arithmetic"),
            std::string::npos);
  // A job: run.sh writes the arithmetic its log named; the step rows find its validation rate.
  const bench::Row job = bench::row_from_job(
      job_jsonl(), {{"gpus", "1"}, {"global_batch", "128"}, {"precision", "fp32"}, {"fp32_math", "3xtf32"}});
  EXPECT_EQ(job.precision, "fp32 (3xTF32)");
  bench::Results r;
  r.rows = {job, rows[0], rows[2]};
  bench::project(r);
  EXPECT_EQ(r.rows[1].val_source, "measured");
  EXPECT_NE(r.rows[2].val_source, "measured");  // FMA: no job of its own
}

TEST(BenchResults, ProjectionTakesInceptsMeasuredValidationElseAssumesTwice) {
  bench::Results r;
  r.rows.push_back(
      bench::row_from_job(job_jsonl(), {{"gpus", "2"}, {"global_batch", "128"}, {"precision", "bf16"}}));
  bench::Row step;
  step.system = "incept";
  step.gpus = 2;
  step.precision = "bf16";
  step.img_s = 21000;
  r.rows.push_back(step);
  bench::Row other = step;
  other.precision = "fp32";  // no fp32 job: assumed
  r.rows.push_back(other);
  bench::Row peer = step;
  peer.kind = bench::Kind::kPeer;
  peer.system = "PyTorch";
  r.rows.push_back(peer);
  bench::project(r);
  EXPECT_NEAR(r.rows[0].job_hours, bench::job_hours(20000, 41000), 1e-9);
  EXPECT_DOUBLE_EQ(r.rows[1].val_img_s, 41000);
  EXPECT_EQ(r.rows[1].val_source, "measured");
  EXPECT_DOUBLE_EQ(r.rows[2].val_img_s, 42000);
  EXPECT_EQ(r.rows[2].val_source, "assumed 2x");
  EXPECT_DOUBLE_EQ(r.rows[3].val_img_s, 42000);
  EXPECT_DOUBLE_EQ(r.rows[3].job_hours, bench::job_hours(21000, 42000));
}

TEST(BenchResults, SplicesTheSectionAndKeepsTheHistory) {
  const std::string history =
      "# Measured results\n\nEvery figure names the machine.\n\n## Session 3\n\n| a | 13,618 |\n\n## "
      "Older\nx\n";
  const std::string once = bench::splice_section(history, "## Latest\nnew 1\n");
  EXPECT_EQ(
      once,
      "# Measured results\n\nEvery figure names the machine.\n\n<!-- run.sh:begin -->\n## Latest\nnew 1\n"
      "<!-- run.sh:end -->\n\n## Session 3\n\n| a | 13,618 |\n\n## Older\nx\n");
  const std::string twice = bench::splice_section(once, "## Latest\nnew 2\n");
  EXPECT_EQ(twice.find("new 1"), std::string::npos);
  EXPECT_NE(twice.find("new 2"), std::string::npos);
  EXPECT_EQ(twice.size(), once.size());
  EXPECT_EQ(twice.substr(twice.find("## Session 3")), history.substr(history.find("## Session 3")));
  EXPECT_EQ(bench::splice_section(twice, "## Latest\nnew 2\n"), twice);
  EXPECT_EQ(bench::splice_section("", "s\n"), "<!-- run.sh:begin -->\ns\n<!-- run.sh:end -->\n");
  EXPECT_NE(error_of([] { bench::splice_section("<!-- run.sh:begin -->\nx", "s"); }).find("without"),
            std::string::npos);
}

TEST(BenchResults, CollectsAnOutputFolderIntoTableCsvMarkdownAndChart) {
  TempDir dir("incept_bench_report");
  auto put = [&](const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; };
  put("meta.txt",
      "date=2026-12-01 10:00 UTC\ncommit=abc1234\nmode=gpu\ngpu_model=NVIDIA H200\ngpu_count=2\ndriver=580\n"
      "data_label=Fashion-MNIST LMDB\ndataset=Fashion-MNIST, 7500 train / 2500 val records\n");
  put("peer_1.json", kPeerJson);
  put("step_2gpu_b64.json", R"({"results": [{"mode": "bf16 NHWC graph x2 GPUs", "ms_per_step": 6.1,
      "img_per_s": 20983, "peak_mib": 1400, "dtype": "bf16", "layout": "NHWC", "data": "synthetic",
      "device": "gpu", "gpus": 2, "batch_per_gpu": 64, "global_batch": 128}]})");
  put("job_g2_b128_bf16.txt", "gpus=2\nglobal_batch=128\nprecision=bf16\npeak_mib=2050\n");
  put("job_g2_b128_bf16.metrics.jsonl", job_jsonl());
  put("loader.json", "{ not json");
  put("skipped.txt", "ingest: not run (--only)\n");
  const bench::Results r = bench::collect({dir.path().string()});
  const std::string table = bench::console_table(r);
  for (const char* s : {"2 x NVIDIA H200", "-- 2 GPUs, global batch 128 (64 per GPU)", "train_googlenet job",
                        "Fashion-MNIST LMDB", "20,983", "13,931", "29.0 h", "NVIDIA Caffe",
                        "PyTorch 2.11.0+cu130", "note: ingest: not run (--only)",
                        "loader.json: bench_loader JSON: not JSON", "tv:compile:fp32:nchw:b128: timed out"})
    EXPECT_NE(table.find(s), std::string::npos) << s << "\n" << table;
  // In the group: incept first (the faster first), then PyTorch.
  const auto a = table.find("20,983"), b = table.find("20,000"), c = table.find("13,931"),
             d = table.find("4,519");
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_LT(c, d);
  const std::string csv = bench::csv(r);
  EXPECT_NE(
      csv.find(
          "job,incept,\"train_googlenet job (loader, step, validation)\",Fashion-MNIST LMDB,2,64,128,bf16,"
          "20000,6.4,2050,41000,measured,"),
      std::string::npos)
      << csv;
  EXPECT_NE(csv.find("\"DIGITS GoogLeNet, torch.compile reduce-overhead, channels_last, DDP\""),
            std::string::npos);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 4 + 3);  // header, 4 measured rows, 3 references
  const std::string md = bench::markdown(r, "results_chart.png");
  EXPECT_NE(md.find("| **2 GPUs, global batch 128 (64 per GPU)** |"), std::string::npos);
  EXPECT_NE(md.find("![img/s per configuration](results_chart.png)"), std::string::npos);
  const chart::BarChart c2 = chart::bar_chart_from_json(bench::chart_json(r));
  std::size_t bars = 0;
  for (const auto& g : c2.groups) bars += g.bars.size();
  EXPECT_EQ(bars,
            4u + 2u);  // 4 measured training rows with a rate, 2 NVIDIA Caffe rates (DIGITS: hours only)
}

TEST(BenchResults, MergesFoldersKeepingTheFirstRowOfAConfigurationAndDroppingStaleNotRunNotes) {
  TempDir one("incept_bench_merge1"), two("incept_bench_merge2");
  auto put = [](const TempDir& d, const std::string& name, const std::string& text) {
    std::ofstream(d / name) << text;
  };
  auto step = [](double img_s) {
    return fmt::format(R"({{"results": [{{"mode": "bf16 NHWC graph", "ms_per_step": 9.3, "img_per_s": {},
      "peak_mib": 2500, "dtype": "bf16", "layout": "NHWC", "data": "synthetic", "device": "gpu", "gpus": 1,
      "batch_per_gpu": 128, "global_batch": 128}}]}})",
                       img_s);
  };
  put(one, "meta.txt", "date=2026-12-01 10:00 UTC\ncommit=aaa1111\nargs=--peers A\nmode=gpu\ngpu_count=2\n");
  put(one, "step_1gpu_b128.json", step(13780));
  put(one, "peer_1.json", kPeerJson);  // notes digits:ro:fp32:nchw:b128 as not run
  put(one, "skipped.txt",
      "pytorch: not run: ddp*:digits:ro:bf16:cl:b128 (the --budget of 470s is spent)\n"
      "ingest: not run (--only)\n");
  put(two, "meta.txt", "date=2026-12-01 11:00 UTC\ncommit=bbb2222\nargs=--peers B\nmode=gpu\ngpu_count=2\n");
  put(two, "step_1gpu_b128.json", step(13500));  // the same configuration again: run 1's row stays
  put(two, "peer_1.json", R"({"results": [
  {"model": "digits", "mode": "ro", "dtype": "fp32", "layout": "nchw", "batch": 128, "ddp": false, "gpus": 1,
   "name": "digits:ro:fp32:nchw:b128", "ms_per_step": 50.1, "img_per_s": 2555.0, "first_step_s": 80,
   "peak_alloc_mib": 4900}]})");
  const bench::Results r = bench::collect({one.path().string(), two.path().string()});
  const std::string table = bench::console_table(r);
  EXPECT_NE(table.find("13,780"), std::string::npos) << table;
  EXPECT_EQ(table.find("13,500"), std::string::npos) << table;
  EXPECT_NE(table.find("2,555"), std::string::npos) << table;
  EXPECT_EQ(table.find("digits:ro:fp32:nchw:b128: not run"), std::string::npos) << table;
  // A pattern that nothing measured keeps its note, and notes name their run.
  EXPECT_NE(table.find("ddp*:digits:ro:bf16:cl:b128 (the --budget of 470s is spent) (run 1)"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("ingest: not run (--only) (run 1)"), std::string::npos) << table;
  EXPECT_NE(table.find("2 runs merged"), std::string::npos) << table;
  EXPECT_NE(table.find("run 2: 2026-12-01 11:00 UTC, commit bbb2222, run.sh --peers B"), std::string::npos)
      << table;
  EXPECT_NE(table.find("run\n"), std::string::npos) << "a run column:\n" << table;
  int row_runs[2] = {0, 0};
  for (const bench::Row& row : r.rows)
    if (row.kind != bench::Kind::kReference) ++row_runs[row.run];
  EXPECT_EQ(row_runs[0], 3);  // the step and the two DDP peers of kPeerJson
  EXPECT_EQ(row_runs[1], 1);  // only the peer run 1 lacked
  // One folder: no run column, no run lines.
  const std::string single = bench::console_table(bench::collect({one.path().string()}));
  EXPECT_EQ(single.find("runs merged"), std::string::npos);
  EXPECT_NE(single.find("digits:ro:fp32:nchw:b128: not run"), std::string::npos);
}

}  // namespace
}  // namespace incept

// The benchmark table of benchmarks/run.sh. Each part of a run leaves its output in one folder
// (bench_train_step, bench_loader, bench_ingest and peer_pytorch.py JSON; train_googlenet's
// metrics.jsonl beside a key=value description; run.sh's meta.txt and skipped.txt); collect()
// turns them into rows, project() adds the wall time of DIGITS' 60-epoch ImageNet job at each
// training rate, and the rows are written as a console table, CSV, a Markdown section for
// benchmarks/RESULTS.md (spliced between markers, the hand-written history kept) and the JSON
// that bench_chart draws (engine/bar_chart.h). bench_report is the thin tool over this.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace incept::bench {

// DIGITS' ImageNet job: 60 epochs over 75 % of ImageNet-1k's 1,281,167 images (DIGITS' default
// 25 % validation split), a validation pass over the other 25 % after every epoch.
inline constexpr std::int64_t kImagenetImages = 1281167;
inline constexpr std::int64_t kJobTrainImages = 960875;  // 75 %
inline constexpr std::int64_t kJobValImages = kImagenetImages - kJobTrainImages;
inline constexpr int kJobEpochs = 60;
// Validation rate assumed where none was measured: twice the training rate (a forward pass is
// about a third of a training step's work; incept measured 2.0x on two H200s: 41,700 img/s of
// validation against 20,750 of training).
inline constexpr double kAssumedValSpeedup = 2.0;

// Hours of the job: (60 x 960,875 / train + 60 x 320,292 / val) / 3600.
double job_hours(double train_img_s, double val_img_s);
// "29.0 h", "54 min", "3.2 d", "-" (not finite).
std::string format_duration(double hours);

enum class Kind { kStep, kJob, kPeer, kReference, kLoader, kIngest };

struct Row {
  Kind kind = Kind::kStep;
  std::string system;     // incept, PyTorch, NVIDIA Caffe, DIGITS
  std::string what;       // the configuration in words
  std::string data;       // synthetic, LMDB ..., or empty
  std::string precision;  // bf16, fp32, ...
  int gpus = 0;           // 0: the CPU
  int batch_per_gpu = 0, global_batch = 0;
  double img_s = NAN, ms_step = NAN, peak_mib = NAN;
  double val_img_s = NAN;       // the validation rate the projection used
  std::string val_source;       // "measured" (train_googlenet), "assumed 2x"
  double job_hours = NAN;       // DIGITS' job at this rate (project())
  int threads = 0;              // loader: decode threads
  double per_core_img_s = NAN;  // loader and ingest: img/s per thread / per core
  std::string note;
  int run = 0;       // which output folder of collect() it came from (0: the first)
  std::string peer;  // PyTorch rows: peer_pytorch.py's configuration name
};

struct Results {
  std::map<std::string, std::string> meta;  // run.sh's meta.txt, then what the programs report
  std::vector<Row> rows;
  std::vector<std::string> notes;  // parts not run and why, errors
  // One line per output folder (date, commit, arguments) when rows of several were merged.
  std::vector<std::string> runs;
};

// The parsers of each part's output, one by one. `data` describes the LMDB of LMDB-fed rows.
// They throw Error on text that is not what the program writes.
std::vector<Row> rows_from_step_json(const std::string& json, const std::string& data,
                                     Results* into = nullptr);
std::vector<Row> rows_from_peer_json(const std::string& json, Results* into = nullptr);
std::vector<Row> rows_from_loader_json(const std::string& json, Results* into = nullptr);
std::vector<Row> rows_from_ingest_json(const std::string& json, Results* into = nullptr);
// One train_googlenet job: its metrics.jsonl and run.sh's description of it (gpus,
// global_batch, precision, fp32_math as the job's log named it, data, peak_mib). Training rate: the median
// over consecutive progress points without a validation pass between them of images / wall time (the loader
// included, the first point's warm-up left out); validation rate: the median of the passes after the first.
Row row_from_job(const std::string& metrics_jsonl, const std::map<std::string, std::string>& info);
// Lines "key=value" (blank lines and lines starting with # skipped).
std::map<std::string, std::string> parse_key_values(const std::string& text);
// DIGITS' published figures for this job (NVIDIA Caffe on Tesla P100, DIGITS' 29 hours).
std::vector<Row> reference_rows();

// Everything found in the output folders (in order; meta from the first folder that has it),
// the reference rows added and every training row projected. Merging folders (runs split over
// several calls): a configuration measured in more than one keeps the first folder's row (each
// row is compared with the others of its own run, see Row::run), and a peer noted "not run" in
// one folder but measured in another loses that note. Files: meta.txt (key=value; "dataset"
// describes the real data, "data_label" names it in the data column), step_*.json, peer_*.json,
// loader.json, ingest.json, job_*.txt + job_*.metrics.jsonl, skipped.txt (one note a line).
Results collect(const std::vector<std::string>& dirs);
// Sets val_img_s / val_source / job_hours of every training row: incept rows take the
// validation rate a train_googlenet job measured at the same GPU count and precision, the
// others (and incept without such a job) kAssumedValSpeedup x their training rate.
void project(Results& r);

std::string console_table(const Results& r);
std::string csv(const Results& r);
// The Markdown section (its own "## " heading; `chart_png`: the chart's path relative to
// RESULTS.md, or empty for none).
std::string markdown(const Results& r, const std::string& chart_png);
// The bar chart (img/s of every training row, grouped by GPUs and global batch) as the JSON
// bar_chart_from_json reads.
std::string chart_json(const Results& r);

inline constexpr const char* kSectionBegin = "<!-- run.sh:begin -->";
inline constexpr const char* kSectionEnd = "<!-- run.sh:end -->";
// `existing` with `section` between the markers: the old section replaced, or, the first time,
// inserted before the first "## " heading (appended when there is none). Nothing else changes.
std::string splice_section(const std::string& existing, const std::string& section);

}  // namespace incept::bench

// The training report of a job, as DIGITS shows it on a model's page: a top graph of every
// loss (train and val, all heads, left axis) and every accuracy x100 (right axis) against
// epoch, and a bottom graph of the learning rate against epoch. Written after each
// validation as JOB_DIR/report.html (self-contained: inline SVG and CSS, every point's value
// in an SVG <title> shown on hover, a summary and the settings) and JOB_DIR/report.png (the
// same graphs drawn with cairo: the picture a user hands in). Both files are replaced
// atomically, so a reader never sees half a file.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/metrics.h"

namespace incept {

struct ReportInfo {
  std::string job_name, network, dataset, device, precision;
  double epochs = 0;          // planned
  std::int64_t max_iter = 0;  // planned
  // Solver values etc., shown as a table in this order.
  std::vector<std::pair<std::string, std::string>> settings;
  std::string last_snapshot;  // file name, "" if none yet
};

// report.png's size in pixels.
constexpr int kReportPngWidth = 1200;
constexpr int kReportPngHeight = 900;
// Train series are culled to at most this many points (DIGITS: ~100); val points never are.
constexpr std::size_t kReportMaxTrainPoints = 300;

// True for an accuracy top ("accuracy", "loss1/accuracy-top5", BVLC's "loss3/top-1"):
// plotted x100 on the right axis, like DIGITS' "accuracy" rule.
bool is_accuracy_top(const std::string& name);
bool is_top5_top(const std::string& name);
// The head of a top: the part before the last '/' ("loss1/accuracy" -> "loss1"), or "" for
// the net's own classifier ("accuracy", "loss").
std::string top_head(const std::string& name);

constexpr double kNoValue = std::numeric_limits<double>::quiet_NaN();

// Validation accuracy of one head. Accuracies are fractions (0..1); NaN where not measured.
struct HeadAccuracy {
  std::string head;        // top_head(); "" for the net's own classifier
  std::string top1, top5;  // the tops ("" where the net has none)
  std::string loss;        // the head's loss top ("" where none)
  double final_top1 = kNoValue, final_top5 = kNoValue, final_loss = kNoValue;
  double final_epoch = kNoValue;  // of the last val point that measured this head
  std::int64_t final_iteration = -1;
  double best_top1 = kNoValue, best_top1_epoch = kNoValue;
  double best_top5 = kNoValue, best_top5_epoch = kNoValue;
};

// One entry per head that has a val accuracy, the net's own classifier first (the "" head,
// else the last head by name: BVLC's loss3), then the others by name. Non-finite values are
// ignored.
std::vector<HeadAccuracy> summarize_accuracy(const std::vector<MetricPoint>& points);

// Writes JOB_DIR/report.html and JOB_DIR/report.png (kReportPngWidth x kReportPngHeight).
// Handles no points, no val points, single points and non-finite values (not drawn).
// Throws Error when a file cannot be written.
void write_report(const std::string& job_dir, const std::vector<MetricPoint>& points, const ReportInfo& info);

}  // namespace incept

// A training job's metrics files: JOB_DIR/metrics.csv (one row per point, a column per Caffe
// top, for spreadsheets) and JOB_DIR/metrics.jsonl (one JSON object per line, for programs).
// Every append is one write(2) per file, so a killed job (kill -9) loses nothing it appended.
// A resumed job reopens the files at its snapshot's iteration and drops the points written
// after it, so the curves do not repeat the iterations that are trained again.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace incept {

// One display interval ("train") or one validation pass ("val").
struct MetricPoint {
  std::string phase;  // "train" or "val"
  std::int64_t iteration = 0;
  double epoch = 0;
  double lr = 0;
  double images_per_s = 0;  // 0 if n/a
  double wall_s = 0;        // since job start
  // Caffe top names and values in the net's order, e.g. {"loss1/loss", 2.3},
  // {"loss1/accuracy", 0.41}; accuracies as fractions 0..1.
  std::vector<std::pair<std::string, double>> values;
};

// An append-only file descriptor (move-only owner).
class AppendFile {
 public:
  AppendFile() = default;
  explicit AppendFile(const std::string& path);  // opens (creating) for O_APPEND; throws Error
  ~AppendFile();
  AppendFile(AppendFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  AppendFile& operator=(AppendFile&& o) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Appends `text` with one write(2) (retried only for a short write); throws Error.
  void write(const std::string& text);

 private:
  int fd_ = -1;
  std::string path_;
};

class MetricsLog {
 public:
  // `columns`: every value name any point may carry (train and val tops), in CSV order.
  // resume_at < 0: a new job; metrics.csv and metrics.jsonl must not exist yet (Error if
  //   they do) and are created with the CSV header.
  // resume_at >= 0: the files are read back (points()), every point with
  //   iteration > resume_at is dropped and both files are rewritten atomically; the CSV
  //   header must match `columns` (Error if not). Missing files are created (with a warning).
  //   A torn last line (kill -9 during a write) is dropped.
  MetricsLog(const std::string& job_dir, std::vector<std::string> columns, std::int64_t resume_at = -1);

  // Appends one row to metrics.csv and one line to metrics.jsonl. A value whose name is not
  // one of the columns is an Error (the CSV could not hold it).
  void append(const MetricPoint& p);

  const std::vector<MetricPoint>& points() const { return points_; }
  const std::vector<std::string>& columns() const { return columns_; }

  // The CSV header and row, and the JSONL line, of a point (without the newline).
  static std::string csv_header(const std::vector<std::string>& columns);
  static std::string csv_row(const MetricPoint& p, const std::vector<std::string>& columns);
  static std::string json_line(const MetricPoint& p);

 private:
  std::string csv_path_, jsonl_path_;
  std::vector<std::string> columns_;
  std::vector<MetricPoint> points_;
  AppendFile csv_, jsonl_;
};

}  // namespace incept

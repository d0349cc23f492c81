// Metrics files of a training job (metrics.h).
#include "engine/metrics.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/check.h"
#include "engine/log.h"

namespace incept {
namespace fs = std::filesystem;
using OrderedJson = nlohmann::ordered_json;

// ---- AppendFile ------------------------------------------------------------------

AppendFile::AppendFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(fmt::format("cannot open {} for writing: {}", path, std::strerror(errno)));
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

AppendFile& AppendFile::operator=(AppendFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

void AppendFile::write(const std::string& text) {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(fmt::format("cannot write {}: {} (disk full?)", path_, std::strerror(errno)));
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

namespace {

// ---- CSV (RFC 4180 quoting where a field needs it) ----------------------------------

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

// Shortest text that reads back to the same double ("nan", "inf" for the non-finite).
std::string number(double v) {
  return fmt::format("{}", v);
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// The complete lines of a file; a last line without '\n' was torn by a kill and is dropped.
std::vector<std::string> read_lines(const std::string& path, bool* torn) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string> lines;
  std::size_t start = 0;
  *torn = false;
  while (start < text.size()) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      *torn = true;
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

MetricPoint point_from_json(const OrderedJson& j) {
  auto num = [](const OrderedJson& v) {
    return v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>();
  };
  MetricPoint p;
  p.phase = j.at("phase").get<std::string>();
  p.iteration = j.at("iteration").get<std::int64_t>();
  p.epoch = num(j.at("epoch"));
  p.lr = num(j.at("lr"));
  p.images_per_s = num(j.at("images_per_s"));
  p.wall_s = num(j.at("wall_s"));
  for (const auto& [name, v] : j.at("values").items()) p.values.emplace_back(name, num(v));
  return p;
}

MetricPoint point_from_csv(const std::vector<std::string>& f, const std::vector<std::string>& columns,
                           const std::string& where) {
  if (f.size() != 6 + columns.size())
    throw Error(fmt::format("{}: {} fields, expected {}", where, f.size(), 6 + columns.size()));
  MetricPoint p;
  p.phase = f[0];
  double iter = 0;
  if (!parse_double(f[1], &p.epoch) || !parse_double(f[2], &iter) || !parse_double(f[3], &p.lr) ||
      !parse_double(f[4], &p.images_per_s) || !parse_double(f[5], &p.wall_s))
    throw Error(fmt::format("{}: a number is unreadable", where));
  p.iteration = static_cast<std::int64_t>(iter);
  for (std::size_t c = 0; c < columns.size(); ++c) {
    double v = 0;
    if (f[6 + c].empty()) continue;
    if (!parse_double(f[6 + c], &v)) throw Error(fmt::format("{}: '{}' is not a number", where, f[6 + c]));
    p.values.emplace_back(columns[c], v);
  }
  return p;
}

// Reads metrics.csv; checks its header against `columns`.
std::vector<MetricPoint> read_csv(const std::string& path, const std::vector<std::string>& columns) {
  bool torn = false;
  const auto lines = read_lines(path, &torn);
  if (lines.empty()) return {};
  const auto header = split_csv(lines[0]);
  const auto want = split_csv(MetricsLog::csv_header(columns));
  if (header != want)
    throw Error(fmt::format(
        "{} has the columns '{}' but this job writes '{}': the file belongs to a different network. "
        "Resume with the network the job was started with, or start a new job in a new --output "
        "directory.",
        path, lines[0], MetricsLog::csv_header(columns)));
  std::vector<MetricPoint> points;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    points.push_back(point_from_csv(split_csv(lines[i]), columns, fmt::format("{} line {}", path, i + 1)));
  }
  if (torn) log_warn("{}: dropped a partly written last line", path);
  return points;
}

std::vector<MetricPoint> read_jsonl(const std::string& path) {
  bool torn = false;
  const auto lines = read_lines(path, &torn);
  std::vector<MetricPoint> points;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    try {
      points.push_back(point_from_json(OrderedJson::parse(lines[i])));
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{} line {} is corrupt ({}); delete the metrics files to start them afresh",
                              path, i + 1, e.what()));
    }
  }
  if (torn) log_warn("{}: dropped a partly written last line", path);
  return points;
}

}  // namespace

// ---- MetricsLog --------------------------------------------------------------------

std::string MetricsLog::csv_header(const std::vector<std::string>& columns) {
  std::string h = "phase,epoch,iteration,lr,images_per_s,wall_s";
  for (const auto& c : columns) {
    h += ',';
    h += csv_field(c);
  }
  return h;
}

std::string MetricsLog::csv_row(const MetricPoint& p, const std::vector<std::string>& columns) {
  std::vector<const double*> cells(columns.size(), nullptr);
  for (const auto& [name, v] : p.values) {
    std::size_t c = 0;
    while (c < columns.size() && columns[c] != name) ++c;
    if (c == columns.size())
      throw Error(fmt::format("metrics: value '{}' is not one of the metrics.csv columns", name));
    cells[c] = &v;
  }
  std::string row = fmt::format("{},{},{},{},{},{}", csv_field(p.phase), number(p.epoch), p.iteration,
                                number(p.lr), number(p.images_per_s), number(p.wall_s));
  for (const double* v : cells) {
    row += ',';
    if (v) row += number(*v);
  }
  return row;
}

std::string MetricsLog::json_line(const MetricPoint& p) {
  OrderedJson j;
  j["phase"] = p.phase;
  j["epoch"] = p.epoch;
  j["iteration"] = p.iteration;
  j["lr"] = p.lr;
  j["images_per_s"] = p.images_per_s;
  j["wall_s"] = p.wall_s;
  OrderedJson values = OrderedJson::object();
  for (const auto& [name, v] : p.values) values[name] = v;  // NaN and inf are written as null
  j["values"] = std::move(values);
  return j.dump();
}

MetricsLog::MetricsLog(const std::string& job_dir, std::vector<std::string> columns, std::int64_t resume_at)
    : csv_path_((fs::path(job_dir) / "metrics.csv").string()),
      jsonl_path_((fs::path(job_dir) / "metrics.jsonl").string()),
      columns_(std::move(columns)) {
  const bool have_csv = fs::exists(csv_path_), have_jsonl = fs::exists(jsonl_path_);
  if (resume_at < 0) {
    if (have_csv || have_jsonl)
      throw Error(fmt::format(
          "{} already holds metrics of a training job: continue it with --resume, or choose a new "
          "--output directory",
          job_dir));
  } else if (have_csv || have_jsonl) {
    // metrics.jsonl is the full record (the net's value order); the CSV is read to check its
    // header and, where the JSONL is missing, as the record.
    std::vector<MetricPoint> from_csv = have_csv ? read_csv(csv_path_, columns_) : std::vector<MetricPoint>{};
    points_ = have_jsonl ? read_jsonl(jsonl_path_) : std::move(from_csv);
    std::erase_if(points_, [&](const MetricPoint& p) { return p.iteration > resume_at; });
    if (have_csv && have_jsonl) {
      std::erase_if(from_csv, [&](const MetricPoint& p) { return p.iteration > resume_at; });
      if (from_csv.size() != points_.size())
        log_warn(
            "metrics.csv had {} points up to iteration {}, metrics.jsonl {}: rewriting the CSV from the "
            "JSONL",
            from_csv.size(), resume_at, points_.size());
    }
  } else {
    log_warn("{}: no metrics files to resume; the graphs start at iteration {}", job_dir, resume_at);
  }

  // Both files rewritten from the kept points (a new job: just the header), then appended to.
  std::string csv = csv_header(columns_) + "\n", jsonl;
  for (const auto& p : points_) {
    csv += csv_row(p, columns_) + "\n";
    jsonl += json_line(p) + "\n";
  }
  write_file_atomic(csv_path_, csv);
  write_file_atomic(jsonl_path_, jsonl);
  csv_ = AppendFile(csv_path_);
  jsonl_ = AppendFile(jsonl_path_);
}

void MetricsLog::append(const MetricPoint& p) {
  const std::string row = csv_row(p, columns_) + "\n";  // throws before anything is written
  jsonl_.write(json_line(p) + "\n");
  csv_.write(row);
  points_.push_back(p);
}

}  // namespace incept

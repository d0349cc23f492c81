// A small thread-safe logger with timestamps (stderr by default) and a progress line
// (count, total, rate, ETA, extra fields) for long work such as ingest and training.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace incept {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Redirects log output (nullptr: back to stderr). The caller keeps the FILE open.
void set_log_file(std::FILE* f);
// "2026-11-26 11:40:03.512 I message" on one line.
void log_line(LogLevel level, std::string_view message);

template <typename... Args>
void log_info(fmt::format_string<Args...> fmt, Args&&... args) {
  if (log_level() <= LogLevel::kInfo)
    log_line(LogLevel::kInfo, fmt::format(fmt, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> fmt, Args&&... args) {
  if (log_level() <= LogLevel::kWarn)
    log_line(LogLevel::kWarn, fmt::format(fmt, std::forward<Args>(args)...));
}
template <typename... Args>
void log_error(fmt::format_string<Args...> fmt, Args&&... args) {
  log_line(LogLevel::kError, fmt::format(fmt, std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> fmt, Args&&... args) {
  if (log_level() <= LogLevel::kDebug)
    log_line(LogLevel::kDebug, fmt::format(fmt, std::forward<Args>(args)...));
}

// "1h02m", "3m05s", "12s": for ETAs and durations.
std::string format_duration(double seconds);

// Progress of long work. update() is cheap and thread-safe; a line is printed at most every
// `interval` seconds (and on finish): "label: 1200/5000 (24.0%) 350.2/s ETA 10s <extra>".
class Progress {
 public:
  Progress(std::string label, std::int64_t total, double interval_s = 2.0);
  // Sets the done count (absolute) and an optional extra text (e.g. "failures 3").
  void update(std::int64_t done, std::string_view extra = {});
  void add(std::int64_t n = 1, std::string_view extra = {});
  void set_total(std::int64_t total);
  void finish(std::string_view extra = {});
  // The line that would be printed now (for tests and tools that draw their own).
  std::string line(std::string_view extra = {}) const;
  double rate() const;  // items per second since start

 private:
  std::string line_locked(std::string_view extra) const;
  std::string label_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  double interval_s_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
  mutable std::mutex mu_;
};

}  // namespace incept

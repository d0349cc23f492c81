// Logger and progress line (log.h).
#include "engine/log.h"

#include <atomic>
#include <ctime>

namespace incept {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<std::FILE*> g_file{nullptr};
std::mutex g_log_mu;
}  // namespace

void set_log_level(LogLevel level) {
  g_level = static_cast<int>(level);
}
LogLevel log_level() {
  return static_cast<LogLevel>(g_level.load());
}
void set_log_file(std::FILE* f) {
  g_file = f;
}

void log_line(LogLevel level, std::string_view message) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  const int ms = static_cast<int>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  static constexpr char kLetters[] = {'D', 'I', 'W', 'E'};
  std::FILE* f = g_file.load();
  if (f == nullptr) f = stderr;
  std::lock_guard lock(g_log_mu);
  std::fprintf(f, "%s.%03d %c %.*s\n", stamp, ms, kLetters[static_cast<int>(level)],
               static_cast<int>(message.size()), message.data());
  std::fflush(f);
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

Progress::Progress(std::string label, std::int64_t total, double interval_s)
    : label_(std::move(label)),
      total_(total),
      interval_s_(interval_s),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

void Progress::update(std::int64_t done, std::string_view extra) {
  std::string text;
  {
    std::lock_guard lock(mu_);
    done_ = done;
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last_print_).count() < interval_s_) return;
    last_print_ = now;
    text = line_locked(extra);
  }
  log_line(LogLevel::kInfo, text);
}

void Progress::add(std::int64_t n, std::string_view extra) {
  std::int64_t d;
  {
    std::lock_guard lock(mu_);
    d = done_ + n;
  }
  update(d, extra);
}

void Progress::set_total(std::int64_t total) {
  std::lock_guard lock(mu_);
  total_ = total;
}

void Progress::finish(std::string_view extra) {
  std::string text;
  {
    std::lock_guard lock(mu_);
    text = line_locked(extra) + " done in " +
           format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  log_line(LogLevel::kInfo, text);
}

double Progress::rate() const {
  std::lock_guard lock(mu_);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return dt > 0 ? static_cast<double>(done_) / dt : 0.0;
}

std::string Progress::line(std::string_view extra) const {
  std::lock_guard lock(mu_);
  return line_locked(extra);
}

std::string Progress::line_locked(std::string_view extra) const {
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = dt > 0 ? static_cast<double>(done_) / dt : 0.0;
  std::string s = fmt::format("{}: {}", label_, done_);
  if (total_ > 0) {
    s += fmt::format("/{} ({:.1f}%)", total_,
                     100.0 * static_cast<double>(done_) / static_cast<double>(total_));
  }
  s += fmt::format(" {:.1f}/s", rate);
  if (total_ > 0 && rate > 0) s += " ETA " + format_duration(static_cast<double>(total_ - done_) / rate);
  if (!extra.empty()) s += fmt::format(" {}", extra);
  return s;
}

}  // namespace incept

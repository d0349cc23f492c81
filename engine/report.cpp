// The training report: series from the metrics, the summary, report.png (report.h).
// The HTML page is assembled in report_html.cpp from the same charts.
#include "engine/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "engine/atomic_file.h"
#include "engine/chart.h"
#include "engine/check.h"
#include "engine/log.h"
#include "engine/report_parts.h"

namespace incept {
namespace fs = std::filesystem;

namespace {
bool contains(const std::string& s, const char* part) {
  return s.find(part) != std::string::npos;
}
}  // namespace

bool is_accuracy_top(const std::string& name) {
  return contains(name, "accuracy") || contains(name, "top-1") || contains(name, "top-5") ||
         contains(name, "top1") || contains(name, "top5") || contains(name, "top_1") ||
         contains(name, "top_5");
}

bool is_top5_top(const std::string& name) {
  return contains(name, "top5") || contains(name, "top-5") || contains(name, "top_5");
}

std::string top_head(const std::string& name) {
  const auto slash = name.rfind('/');
  return slash == std::string::npos ? std::string() : name.substr(0, slash);
}

std::vector<HeadAccuracy> summarize_accuracy(const std::vector<MetricPoint>& points) {
  std::map<std::string, HeadAccuracy> heads;
  for (const MetricPoint& p : points) {
    if (p.phase != "val") continue;
    for (const auto& [name, v] : p.values) {
      if (!is_accuracy_top(name)) continue;
      HeadAccuracy& h = heads[top_head(name)];
      h.head = top_head(name);
      if (!std::isfinite(v)) continue;
      const bool top5 = is_top5_top(name);
      (top5 ? h.top5 : h.top1) = name;
      (top5 ? h.final_top5 : h.final_top1) = v;
      double& best = top5 ? h.best_top5 : h.best_top1;
      if (!(best >= v)) {
        best = v;
        (top5 ? h.best_top5_epoch : h.best_top1_epoch) = p.epoch;
      }
      h.final_epoch = p.epoch;
      h.final_iteration = p.iteration;
    }
  }
  // Each head's loss: the val loss top with the same head, at the head's last val point.
  for (const MetricPoint& p : points) {
    if (p.phase != "val") continue;
    for (const auto& [name, v] : p.values) {
      auto it = heads.find(top_head(name));
      if (is_accuracy_top(name) || it == heads.end() || !std::isfinite(v)) continue;
      it->second.loss = name;
      if (p.iteration <= it->second.final_iteration) it->second.final_loss = v;
    }
  }
  std::vector<HeadAccuracy> out;
  for (auto& [head, h] : heads) out.push_back(std::move(h));
  // The net's own classifier first: the "" head (sorted first already), else the last one.
  if (!out.empty() && !out.front().head.empty()) std::rotate(out.rbegin(), out.rbegin() + 1, out.rend());
  return out;
}

namespace report_detail {

std::string format_epoch(double epoch) {
  if (!std::isfinite(epoch)) return "-";
  std::string s = fmt::format("{:.3f}", epoch);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string format_percent(double fraction) {
  return std::isfinite(fraction) ? fmt::format("{:.2f} %", 100 * fraction) : std::string("-");
}

namespace {

constexpr std::uint32_t kLossColours[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0x17becf, 0xbcbd22, 0x7f7f7f};
constexpr std::uint32_t kAccuracyColours[] = {0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22};
constexpr std::uint32_t kLrColour = 0x1f77b4;

struct TopSeries {
  std::string top, phase;
  std::vector<std::pair<const MetricPoint*, double>> values;
};

// Keeps at most `max` points by a fixed stride, always the last one (DIGITS culls likewise).
template <typename T>
std::vector<T> cull(const std::vector<T>& v, std::size_t max) {
  if (v.size() <= max) return v;
  const std::size_t stride = (v.size() + max - 1) / max;
  std::vector<T> out;
  for (std::size_t i = 0; i < v.size(); i += stride) out.push_back(v[i]);
  if ((v.size() - 1) % stride != 0) out.push_back(v.back());
  return out;
}

std::string value_text(const std::string& top, double v) {
  return is_accuracy_top(top) ? format_percent(v) : fmt::format("{:.4f}", v);
}

}  // namespace

std::vector<chart::Series> metric_series(const std::vector<MetricPoint>& points) {
  // Every (phase, top) in order of first appearance; heads numbered likewise for colours.
  std::vector<TopSeries> tops;
  std::map<std::string, std::size_t> index, head_index;
  // The net's own head takes the first colours, from the first report of a job to its last.
  std::string main_head;
  bool any = false, unprefixed = false;
  for (const MetricPoint& p : points)
    for (const auto& [name, v] : p.values) {
      const std::string h = top_head(name);
      unprefixed |= h.empty();
      if (!any || h > main_head) main_head = h;
      any = true;
    }
  if (any) head_index.emplace(unprefixed ? std::string() : main_head, 0);
  for (const MetricPoint& p : points)
    for (const auto& [name, v] : p.values) {
      head_index.try_emplace(top_head(name), head_index.size());
      auto [it, added] = index.try_emplace(p.phase + '\n' + name, tops.size());
      if (added) tops.push_back(TopSeries{name, p.phase, {}});
      tops[it->second].values.emplace_back(&p, v);
    }
  // Losses (train, then val), then top-1 accuracies, then top-5: the legend's columns.
  auto group = [](const TopSeries& t) {
    return is_accuracy_top(t.top) ? 2 + is_top5_top(t.top) : t.phase == "train" ? 0 : 1;
  };
  std::stable_sort(tops.begin(), tops.end(),
                   [&](const TopSeries& a, const TopSeries& b) { return group(a) < group(b); });

  std::vector<chart::Series> out;
  for (const TopSeries& t : tops) {
    const bool accuracy = is_accuracy_top(t.top), val = t.phase != "train";
    const std::size_t h = head_index.at(top_head(t.top));
    chart::Series s;
    s.name = fmt::format("{} ({})", t.top, t.phase);
    s.colour = chart::colour_from_hex(accuracy ? kAccuracyColours[h % std::size(kAccuracyColours)]
                                               : kLossColours[h % std::size(kLossColours)]);
    s.right_axis = accuracy;
    s.dashed = accuracy && is_top5_top(t.top);
    s.markers = val;
    s.width = val ? 2.0 : 1.25;
    s.opacity = val ? 1.0 : 0.55;
    for (const auto& [p, v] : val ? t.values : cull(t.values, kReportMaxTrainPoints)) {
      s.points.push_back(
          chart::Point{p->epoch, accuracy ? 100 * v : v,
                       fmt::format("{}\nepoch {}, iteration {}\n{}", s.name, format_epoch(p->epoch),
                                   p->iteration, value_text(t.top, v))});
    }
    out.push_back(std::move(s));
  }
  return out;
}

chart::Series lr_series(const std::vector<MetricPoint>& points, bool* log_scale) {
  std::vector<const MetricPoint*> by_iter;
  for (const MetricPoint& p : points)
    if (std::isfinite(p.lr) && p.lr >= 0) by_iter.push_back(&p);
  std::stable_sort(by_iter.begin(), by_iter.end(),
                   [](const MetricPoint* a, const MetricPoint* b) { return a->iteration < b->iteration; });
  by_iter.erase(
      std::unique(by_iter.begin(), by_iter.end(),
                  [](const MetricPoint* a, const MetricPoint* b) { return a->iteration == b->iteration; }),
      by_iter.end());
  // Culled by stride, but both sides of every jump (a step drop) are kept exactly.
  std::vector<std::size_t> keep;
  std::vector<std::size_t> all(by_iter.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  keep = cull(all, kReportMaxTrainPoints);
  for (std::size_t i = 1; i < by_iter.size(); ++i) {
    const double a = by_iter[i - 1]->lr, b = by_iter[i]->lr;
    if (std::abs(b - a) > 0.05 * std::max(a, b)) {
      keep.push_back(i - 1);
      keep.push_back(i);
    }
  }
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());

  chart::Series s;
  s.name = "learning rate";
  s.colour = chart::colour_from_hex(kLrColour);
  s.step = true;
  s.width = 2;
  double lo = INFINITY, hi = 0;
  for (std::size_t i : keep) {
    const MetricPoint& p = *by_iter[i];
    lo = std::min(lo, p.lr);
    hi = std::max(hi, p.lr);
    s.points.push_back(chart::Point{p.epoch, p.lr,
                                    fmt::format("learning rate\nepoch {}, iteration {}\n{:g}",
                                                format_epoch(p.epoch), p.iteration, p.lr)});
  }
  // A log axis shows every drop of a step schedule (0.01, 0.001, 0.0001) as an equal step.
  *log_scale = lo > 0 && hi >= 10 * lo;
  return s;
}

Figure figure(const std::vector<MetricPoint>& points) {
  Figure f;
  f.main.x.label = "epoch";
  f.main.y.label = "loss";
  f.main.y2.label = "accuracy (%)";
  f.main.y2.min = 0;
  f.main.y2.max = 100;
  f.main.series = metric_series(points);
  f.main.has_y2 = std::any_of(f.main.series.begin(), f.main.series.end(),
                              [](const chart::Series& s) { return s.right_axis; });
  bool log_scale = false;
  f.lr.series.push_back(lr_series(points, &log_scale));
  f.lr.x.label = "epoch";
  f.lr.y.log = log_scale;
  f.lr.y.label = log_scale ? "learning rate (log)" : "learning rate";
  // Both graphs share the epoch axis, so a drop lines up with the jump it causes.
  double x_max = 0;
  for (const MetricPoint& p : points)
    if (std::isfinite(p.epoch)) x_max = std::max(x_max, p.epoch);
  const chart::Ticks tx = chart::linear_ticks(0, x_max > 0 ? x_max : 1, 10);
  f.main.x.min = f.lr.x.min = tx.lo;
  f.main.x.max = f.lr.x.max = tx.hi;
  const auto [main_left, main_right] = chart::chart_margins(f.main);
  const auto [lr_left, lr_right] = chart::chart_margins(f.lr);
  f.main.margin_left = f.lr.margin_left = std::max(main_left, lr_left);
  f.main.margin_right = f.lr.margin_right = std::max(main_right, lr_right);
  return f;
}

std::vector<std::string> headline(const std::vector<MetricPoint>& points, const ReportInfo& info) {
  std::vector<std::string> lines;
  const std::string name = info.job_name.empty() ? "training report" : info.job_name;
  lines.push_back(info.network.empty() ? name : fmt::format("{}: {}", name, info.network));
  std::string sub;
  if (!info.dataset.empty()) sub += fmt::format("dataset {}", fs::path(info.dataset).filename().string());
  for (const std::string& part : {info.device, info.precision})
    if (!part.empty()) sub += (sub.empty() ? "" : " · ") + part;
  if (!points.empty()) {
    const MetricPoint& last = points.back();
    sub += (sub.empty() ? "" : " · ") + fmt::format("epoch {}", format_epoch(last.epoch));
    if (info.epochs > 0) sub += fmt::format(" of {}", format_epoch(info.epochs));
    sub += fmt::format(", iteration {}", last.iteration);
    if (info.max_iter > 0) sub += fmt::format(" of {}", info.max_iter);
    if (std::isfinite(last.wall_s) && last.wall_s > 0) sub += ", " + format_duration(last.wall_s);
  }
  lines.push_back(sub.empty() ? std::string("no metrics yet") : sub);
  const auto heads = summarize_accuracy(points);
  if (heads.empty()) {
    lines.push_back("validation: none yet");
  } else {
    const HeadAccuracy& h = heads.front();
    std::string v = fmt::format("validation at epoch {}: top-1 {}", format_epoch(h.final_epoch),
                                format_percent(h.final_top1));
    if (!h.top5.empty()) v += fmt::format(", top-5 {}", format_percent(h.final_top5));
    if (std::isfinite(h.best_top1) && h.best_top1 > h.final_top1)
      v += fmt::format(" (best top-1 {} at epoch {})", format_percent(h.best_top1),
                       format_epoch(h.best_top1_epoch));
    lines.push_back(v);
  }
  return lines;
}

void draw_png_page(chart::Canvas& c, const Figure& f, const std::vector<std::string>& head) {
  const chart::Colour ink{0x22, 0x22, 0x22}, grey{0x55, 0x55, 0x55};
  const double w = kReportPngWidth, h = kReportPngHeight;
  c.text(20, 30, head[0], 20, chart::Anchor::kStart, ink, true, false);
  c.text(20, 53, head[1], 13.5, chart::Anchor::kStart, grey, false, false);
  c.text(20, 75, head[2], 14.5, chart::Anchor::kStart, ink, true, false);
  const double legend_h = chart::legend_height(f.main.series, w - 100);
  const double lr_h = 220, top = 88;
  const double main_h = h - top - legend_h - lr_h - 16;
  draw_main_figure(c, chart::Box{0, top, w, main_h + legend_h}, f);
  chart::draw_chart(c, chart::Box{0, h - lr_h - 6, w, lr_h}, f.lr);
}

void draw_main_figure(chart::Canvas& c, const chart::Box& box, const Figure& f) {
  const double legend_h = chart::legend_height(f.main.series, box.w - 100);
  chart::draw_chart(c, chart::Box{box.x, box.y, box.w, box.h - legend_h}, f.main);
  chart::draw_legend(c, chart::Box{box.x + 70, box.y + box.h - legend_h, box.w - 100, legend_h},
                     f.main.series);
}

}  // namespace report_detail

void write_report(const std::string& job_dir, const std::vector<MetricPoint>& points,
                  const ReportInfo& info) {
  using namespace report_detail;
  const Figure f = figure(points);
  const auto head = headline(points, info);
  const std::string png = chart::render_png(kReportPngWidth, kReportPngHeight,
                                            [&](chart::Canvas& c) { draw_png_page(c, f, head); });
  write_file_atomic(fs::path(job_dir) / "report.png", png);
  write_file_atomic(fs::path(job_dir) / "report.html", html_page(points, info, f, head));
}

}  // namespace incept

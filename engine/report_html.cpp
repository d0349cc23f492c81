// report.html: one self-contained page (inline CSS and SVG, no script, no network) with the
// two graphs, the validation accuracy of every head, the job and its settings. The page is
// well-formed XML as well as HTML, so tests (and tools) can parse it.
#include <fmt/format.h>

#include <cmath>

#include "engine/chart.h"
#include "engine/log.h"
#include "engine/report_parts.h"

namespace incept::report_detail {
namespace {

constexpr const char* kStyle = R"(
body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; color: #222; max-width: 1240px;
       margin: 20px auto; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 26px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
p.sub { color: #555; margin: 0 0 6px; }
p.result { font-weight: bold; margin: 0 0 8px; }
p.note { color: #777; font-size: 13px; margin: 4px 0; }
svg { display: block; max-width: 100%; height: auto; }
svg circle.hit:hover { fill-opacity: 1; }
svg circle.pt:hover { stroke: #000; stroke-width: 1.5px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.main td { font-weight: bold; }
)";

std::string esc(const std::string& s) {
  return chart::xml_escape(s);
}

std::string row(const std::vector<std::string>& cells, const char* cls = nullptr,
                std::size_t text_cells = 1) {
  std::string r = cls ? fmt::format("<tr class=\"{}\">", cls) : std::string("<tr>");
  for (std::size_t i = 0; i < cells.size(); ++i)
    r += (i < text_cells ? "<td>" : "<td class=\"num\">") + esc(cells[i]) + "</td>";
  return r + "</tr>\n";
}

std::string with_epoch(double value, double epoch) {
  return std::isfinite(value) ? fmt::format("{} (epoch {})", format_percent(value), format_epoch(epoch))
                              : "-";
}

std::string accuracy_table(const std::vector<MetricPoint>& points) {
  const auto heads = summarize_accuracy(points);
  if (heads.empty()) return "<p>No validation yet.</p>\n";
  std::string t =
      "<table>\n<tr><th>Head</th><th>Tops</th><th>Top-1</th><th>Top-5</th><th>Best top-1</th>"
      "<th>Best top-5</th><th>Val loss</th><th>At epoch</th></tr>\n";
  for (std::size_t i = 0; i < heads.size(); ++i) {
    const HeadAccuracy& h = heads[i];
    std::string name = h.head.empty() ? "main" : h.head;
    if (i == 0 && !h.head.empty()) name += " (main)";
    std::string tops = h.top1;
    if (!h.top5.empty()) tops += (tops.empty() ? "" : ", ") + h.top5;
    t += row({name, tops, format_percent(h.final_top1), format_percent(h.final_top5),
              with_epoch(h.best_top1, h.best_top1_epoch), with_epoch(h.best_top5, h.best_top5_epoch),
              std::isfinite(h.final_loss) ? fmt::format("{:.4f}", h.final_loss) : "-",
              format_epoch(h.final_epoch)},
             i == 0 ? "main" : nullptr, 2);
  }
  return t + "</table>\n";
}

std::string job_table(const std::vector<MetricPoint>& points, const ReportInfo& info) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Job", info.job_name},  {"Network", info.network},     {"Dataset", info.dataset},
      {"Device", info.device}, {"Precision", info.precision},
  };
  if (info.epochs > 0) rows.emplace_back("Epochs", format_epoch(info.epochs));
  if (info.max_iter > 0) rows.emplace_back("Iterations", std::to_string(info.max_iter));
  if (!points.empty()) {
    const MetricPoint& last = points.back();
    rows.emplace_back("Reached",
                      fmt::format("epoch {}, iteration {}", format_epoch(last.epoch), last.iteration));
    if (std::isfinite(last.wall_s)) rows.emplace_back("Wall time", format_duration(last.wall_s));
  }
  for (auto it = points.rbegin(); it != points.rend(); ++it)
    if (it->phase == "train" && std::isfinite(it->images_per_s) && it->images_per_s > 0) {
      rows.emplace_back("Training speed", fmt::format("{:.1f} images/s", it->images_per_s));
      break;
    }
  rows.emplace_back("Last snapshot", info.last_snapshot.empty() ? "none yet" : info.last_snapshot);
  std::string t = "<table>\n";
  for (const auto& [k, v] : rows)
    if (!v.empty()) t += "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>\n";
  return t + "</table>\n";
}

std::string settings_table(const ReportInfo& info) {
  if (info.settings.empty()) return "<p>None recorded.</p>\n";
  std::string t = "<table>\n";
  for (const auto& [k, v] : info.settings) t += "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>\n";
  return t + "</table>\n";
}

}  // namespace

std::string html_page(const std::vector<MetricPoint>& points, const ReportInfo& info, const Figure& f,
                      const std::vector<std::string>& head) {
  constexpr double kWidth = 1200, kMainHeight = 520, kLrHeight = 240;
  chart::SvgCanvas main("main");
  const double main_h = kMainHeight + chart::legend_height(f.main.series, kWidth - 100);
  draw_main_figure(main, chart::Box{0, 0, kWidth, main_h}, f);
  chart::SvgCanvas lr("lr");
  chart::draw_chart(lr, chart::Box{0, 0, kWidth, kLrHeight}, f.lr);

  std::string page = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n";
  page += "<title>" + esc(info.job_name) + " · incept training report</title>\n";
  page += std::string("<style>") + kStyle + "</style>\n</head>\n<body>\n";
  page += "<h1>" + esc(head[0]) + "</h1>\n";
  page += "<p class=\"sub\">" + esc(head[1]) + "</p>\n";
  page += "<p class=\"result\">" + esc(head[2]) + "</p>\n";
  page += "<h2>Loss and accuracy</h2>\n";
  page +=
      main.svg(kWidth, main_h, "loss (left axis) and accuracy in percent (right axis) against epoch") + "\n";
  page +=
      "<p class=\"note\">Hover over a point to read its series, epoch, iteration and value. Losses: left "
      "axis; "
      "accuracies: right axis, top-5 dashed. Faint lines: training; lines with dots: validation.</p>\n";
  page += "<h2>Learning rate</h2>\n";
  page += lr.svg(kWidth, kLrHeight, "learning rate against epoch") + "\n";
  page += "<h2>Validation accuracy</h2>\n" + accuracy_table(points);
  page += "<h2>Job</h2>\n" + job_table(points, info);
  page += "<h2>Settings</h2>\n" + settings_table(info);
  page +=
      "<p class=\"note\">Every point: <a href=\"metrics.csv\">metrics.csv</a>, "
      "<a href=\"metrics.jsonl\">metrics.jsonl</a>. The same graphs: <a "
      "href=\"report.png\">report.png</a>.</p>\n";
  return page + "</body>\n</html>\n";
}

}  // namespace incept::report_detail

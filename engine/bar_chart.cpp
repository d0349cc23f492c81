// Horizontal bar charts (bar_chart.h).
#include "engine/bar_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace incept::chart {
namespace {

constexpr double kPad = 16, kTitleSize = 16, kLegendSize = 12.5, kGroupSize = 13, kLabelSize = 12,
                 kValueSize = 11.5, kTickSize = 12, kAxisSize = 13;
constexpr double kTitleH = 26, kLegendRow = 20, kGroupH = 24, kRow = 22, kBarH = 14, kGroupGap = 8,
                 kAxisH = 46, kSwatch = 12;
const Colour kInk{0x33, 0x33, 0x33}, kGrid{0xe3, 0xe3, 0xe3}, kFrame{0x99, 0x99, 0x99};
const std::uint32_t kDefaultColours[] = {0x1f77b4, 0xff7f0e, 0x7f7f7f, 0x2ca02c,
                                         0x9467bd, 0x8c564b, 0xd62728};

std::string text_of(const Bar& b) {
  return b.value_text.empty() ? format_value(b.value) : b.value_text;
}

struct Layout {
  double label_w = 0, value_w = 0, plot_x = 0, plot_w = 0, legend_h = 0, top = 0;
  std::vector<std::pair<std::string, Colour>> series;
  Ticks ticks;
};

// Legend entries laid out left to right, wrapping at `width`; returns the rows used.
int legend_rows(const std::vector<std::pair<std::string, Colour>>& series, double width,
                std::vector<std::pair<double, int>>* at = nullptr) {
  double x = 0;
  int row = 0;
  for (const auto& [name, colour] : series) {
    const double w = kSwatch + 6 + text_width(name, kLegendSize) + 22;
    if (x > 0 && x + w > width) x = 0, ++row;
    if (at) at->emplace_back(x, row);
    x += w;
  }
  return series.empty() ? 0 : row + 1;
}

Layout layout(const BarChart& chart, double width) {
  Layout l;
  l.series = bar_series(chart);
  double max_value = 0;
  for (const BarGroup& g : chart.groups)
    for (const Bar& b : g.bars) {
      l.label_w = std::max(l.label_w, text_width(b.label, kLabelSize));
      l.value_w = std::max(l.value_w, text_width(text_of(b), kValueSize));
      if (std::isfinite(b.value)) max_value = std::max(max_value, b.value);
    }
  l.label_w = std::clamp(l.label_w + 12, 60.0, 0.45 * width);
  l.plot_x = kPad + l.label_w;
  l.plot_w = std::max(40.0, width - l.plot_x - l.value_w - 8 - kPad);
  l.legend_h = legend_rows(l.series, width - 2 * kPad) * kLegendRow;
  l.top = kPad + (chart.title.empty() ? 0 : kTitleH) + l.legend_h + 6;
  l.ticks = linear_ticks(0, max_value > 0 ? max_value : 1, std::max(2, static_cast<int>(l.plot_w / 110)));
  return l;
}

double groups_height(const BarChart& chart) {
  double h = 0;
  for (const BarGroup& g : chart.groups)
    h += (g.title.empty() ? 0 : kGroupH) + static_cast<double>(g.bars.size()) * kRow + kGroupGap;
  return h;
}

}  // namespace

std::string format_value(double v) {
  if (!std::isfinite(v)) return "-";
  if (std::abs(v) < 100) return fmt::format("{:.{}f}", v, std::abs(v) < 10 ? 2 : 1);
  std::string digits = fmt::format("{:.0f}", std::abs(v)), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::vector<std::pair<std::string, Colour>> bar_series(const BarChart& chart) {
  std::vector<std::pair<std::string, Colour>> out;
  std::size_t next = 0;
  auto known = [&](const std::string& name) {
    return std::any_of(out.begin(), out.end(), [&](const auto& s) { return s.first == name; });
  };
  std::vector<std::string> used;
  for (const BarGroup& g : chart.groups)
    for (const Bar& b : g.bars)
      if (std::find(used.begin(), used.end(), b.series) == used.end()) used.push_back(b.series);
  for (const auto& [name, colour] : chart.palette)
    if (std::find(used.begin(), used.end(), name) != used.end() && !known(name))
      out.emplace_back(name, colour);
  for (const std::string& name : used)
    if (!known(name)) {  // the next default colour that no listed series has
      auto taken = [&](std::uint32_t rgb) {
        return std::any_of(out.begin(), out.end(),
                           [&](const auto& o) { return o.second.hex() == colour_from_hex(rgb).hex(); });
      };
      while (next + 1 < std::size(kDefaultColours) && taken(kDefaultColours[next])) ++next;
      out.emplace_back(name, colour_from_hex(kDefaultColours[next % std::size(kDefaultColours)]));
      ++next;
    }
  return out;
}

double bar_chart_height(const BarChart& chart, double width) {
  return layout(chart, width).top + groups_height(chart) + kAxisH + kPad;
}

void draw_bar_chart(Canvas& c, double width, const BarChart& chart) {
  const Layout l = layout(chart, width);
  if (!chart.title.empty())
    c.text(kPad, kPad + kTitleSize, chart.title, kTitleSize, Anchor::kStart, kInk, true, false);
  std::vector<std::pair<double, int>> at;
  legend_rows(l.series, width - 2 * kPad, &at);
  const double legend_y = kPad + (chart.title.empty() ? 0 : kTitleH);
  for (std::size_t i = 0; i < l.series.size(); ++i) {
    const double x = kPad + at[i].first, y = legend_y + at[i].second * kLegendRow;
    c.rect(x, y + 3, kSwatch, kSwatch, &l.series[i].second, nullptr);
    c.text(x + kSwatch + 6, y + 13, l.series[i].first, kLegendSize, Anchor::kStart, kInk, false, false);
  }
  const double plot_top = l.top, plot_bottom = l.top + groups_height(chart);
  auto sx = [&](double v) { return l.plot_x + v / l.ticks.hi * l.plot_w; };
  for (double t : l.ticks.values) {
    const double x = sx(t);
    c.polyline({{x, plot_top}, {x, plot_bottom}}, Stroke{kGrid, 1});
    c.text(x, plot_bottom + 16, tick_label(t, l.ticks, false), kTickSize, Anchor::kMiddle, kInk, false,
           false);
  }
  c.polyline({{l.plot_x, plot_top}, {l.plot_x, plot_bottom}}, Stroke{kFrame, 1});
  c.polyline({{l.plot_x, plot_bottom}, {l.plot_x + l.plot_w, plot_bottom}}, Stroke{kFrame, 1});
  if (!chart.value_label.empty())
    c.text(l.plot_x + l.plot_w / 2, plot_bottom + 36, chart.value_label, kAxisSize, Anchor::kMiddle, kInk,
           false, false);
  double y = plot_top;
  for (const BarGroup& g : chart.groups) {
    if (!g.title.empty()) {
      c.text(kPad, y + 17, g.title, kGroupSize, Anchor::kStart, kInk, true, false);
      y += kGroupH;
    }
    for (const Bar& b : g.bars) {
      const double mid = y + kRow / 2;
      c.text(l.plot_x - 8, mid + 4, b.label, kLabelSize, Anchor::kEnd, kInk, false, false);
      double end = l.plot_x;
      if (std::isfinite(b.value) && b.value > 0) {
        const auto s = std::find_if(l.series.begin(), l.series.end(),
                                    [&](const auto& p) { return p.first == b.series; });
        end = sx(std::min(b.value, l.ticks.hi));
        c.rect(l.plot_x, mid - kBarH / 2, end - l.plot_x, kBarH, &s->second, nullptr);
      }
      c.text(end + 5, mid + 4, text_of(b), kValueSize, Anchor::kStart, kInk, false, false);
      y += kRow;
    }
    y += kGroupGap;
  }
}

std::string bar_chart_png(const BarChart& chart, int width) {
  std::size_t bars = 0;
  for (const BarGroup& g : chart.groups) bars += g.bars.size();
  if (bars == 0) throw Error("bar chart: nothing to draw (no bars)");
  const int height = static_cast<int>(std::ceil(bar_chart_height(chart, width)));
  return render_png(width, height, [&](Canvas& c) { draw_bar_chart(c, width, chart); });
}

BarChart bar_chart_from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("bar chart JSON: {}", e.what()));
  }
  try {
    BarChart chart;
    chart.title = j.value("title", "");
    chart.value_label = j.value("value_label", "");
    for (const auto& p : j.value("palette", nlohmann::json::array())) {
      const std::string hex = p.at(1).get<std::string>();
      if (hex.size() != 7 || hex[0] != '#')
        throw Error(fmt::format("bar chart JSON: colour '{}' is not #rrggbb", hex));
      chart.palette.emplace_back(
          p.at(0).get<std::string>(),
          colour_from_hex(static_cast<std::uint32_t>(std::stoul(hex.substr(1), nullptr, 16))));
    }
    if (!j.contains("groups")) throw Error("bar chart JSON: no \"groups\"");
    for (const auto& g : j.at("groups")) {
      BarGroup group;
      group.title = g.value("title", "");
      for (const auto& b : g.at("bars")) {
        Bar bar;
        bar.label = b.at("label").get<std::string>();
        bar.series = b.value("series", "");
        bar.value = b.at("value").is_null() ? NAN : b.at("value").get<double>();
        bar.value_text = b.value("text", "");
        group.bars.push_back(std::move(bar));
      }
      chart.groups.push_back(std::move(group));
    }
    return chart;
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("bar chart JSON: {}", e.what()));
  }
}

}  // namespace incept::chart

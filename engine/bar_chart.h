// Horizontal bar charts for the benchmark summary (benchmarks/run.sh -> bench_chart): one bar per
// configuration, grouped under headings (e.g. "2 GPUs, global batch 128"), coloured by series
// (incept, PyTorch, NVIDIA Caffe), the value written at the end of each bar. Drawn once through
// chart.h's Canvas, so the PNG (cairo) and an SVG are the same picture.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/chart.h"

namespace incept::chart {

struct Bar {
  std::string label;       // left of the bar
  std::string series;      // sets the colour (and the legend entry)
  double value = 0;        // >= 0; a non-finite value draws no bar, only its text
  std::string value_text;  // at the bar's end; empty: the value with thousands separators
};

struct BarGroup {
  std::string title;
  std::vector<Bar> bars;
};

struct BarChart {
  std::string title;
  std::string value_label;  // under the value axis, e.g. "images/s (higher is better)"
  std::vector<BarGroup> groups;
  // Series colours in legend order; a series not listed here takes the next default colour.
  std::vector<std::pair<std::string, Colour>> palette;
};

// 12,345 from 100 up (an integer with thousands separators), 12.3 from 10, 1.23 below; "-" if not finite.
std::string format_value(double v);

// The series in legend order (palette order first, then first appearance) with their colours.
std::vector<std::pair<std::string, Colour>> bar_series(const BarChart& chart);

// Pixels the chart needs vertically at `width` pixels wide.
double bar_chart_height(const BarChart& chart, double width);
// Draws the chart into [0, width] x [0, bar_chart_height(chart, width)].
void draw_bar_chart(Canvas& c, double width, const BarChart& chart);
// The chart as PNG bytes (white background); throws Error when there is no bar or cairo fails.
std::string bar_chart_png(const BarChart& chart, int width);

// Reads the JSON that benchmarks/run.sh's report writes (bench_report):
//   {"title": ..., "value_label": ..., "palette": [["incept", "#1f77b4"], ...],
//    "groups": [{"title": ..., "bars": [{"label": ..., "series": ..., "value": 123.4, "text": ...}]}]}
// Throws Error naming what is missing or malformed.
BarChart bar_chart_from_json(const std::string& text);

}  // namespace incept::chart

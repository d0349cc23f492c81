// Internal pieces of the training report shared by report.cpp (series, summary, PNG) and
// report_html.cpp (the HTML page). Not part of the engine's API.
#pragma once

#include <string>
#include <vector>

#include "engine/chart.h"
#include "engine/report.h"

namespace incept::report_detail {

// The two graphs: losses and accuracies against epoch, and the learning rate.
struct Figure {
  chart::ChartSpec main, lr;
};

std::string format_epoch(double epoch);       // "3", "0.123" (3 decimals at most)
std::string format_percent(double fraction);  // "41.23 %", "-" for NaN

std::vector<chart::Series> metric_series(const std::vector<MetricPoint>& points);
chart::Series lr_series(const std::vector<MetricPoint>& points, bool* log_scale);
Figure figure(const std::vector<MetricPoint>& points);
// Three lines: job and network; dataset, device, progress; the validation result.
std::vector<std::string> headline(const std::vector<MetricPoint>& points, const ReportInfo& info);

// The top graph with its legend below it, inside `box`.
void draw_main_figure(chart::Canvas& c, const chart::Box& box, const Figure& f);
// report.png: the headline, the top graph and legend, the learning-rate graph.
void draw_png_page(chart::Canvas& c, const Figure& f, const std::vector<std::string>& head);

std::string html_page(const std::vector<MetricPoint>& points, const ReportInfo& info, const Figure& f,
                      const std::vector<std::string>& head);

}  // namespace incept::report_detail

// bench_chart --json chart.json --out chart.png [--width 1200]: draws the bar chart that
// bench_report describes (img/s per configuration, incept against its peers) with the
// project's plotting code (engine/bar_chart.h, cairo).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/bar_chart.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  std::string in, out;
  int width = 1200;
  CLI::App app{"bench_chart: the benchmark bar chart as PNG"};
  app.add_option("--json", in, "the chart description (bench_report's chart.json)")->required();
  app.add_option("--out", out, "PNG file to write")->required();
  app.add_option("--width", width, "pixels")->capture_default_str()->check(CLI::Range(400, 8000));
  CLI11_PARSE(app, argc, argv);
  try {
    std::ifstream f(in);
    if (!f) throw incept::Error("cannot read " + in);
    std::ostringstream text;
    text << f.rdbuf();
    const incept::chart::BarChart chart = incept::chart::bar_chart_from_json(text.str());
    const std::string png = incept::chart::bar_chart_png(chart, width);
    incept::write_file_atomic(out, png);
    std::printf("wrote %s (%zu bytes)\n", out.c_str(), png.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_chart: %s\n", e.what());
    return 1;
  }
  return 0;
}

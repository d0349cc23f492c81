// bench_report OUT_DIR [OUT_DIR...] [--results RESULTS.md] [--chart-link PATH]: the table of a
// benchmarks/run.sh run (engine/bench_results.h). Reads what each part left in the output
// folders, prints the console table and writes, into the first folder, table.txt, results.csv,
// results.md (the Markdown section) and chart.json (for bench_chart). --results splices the
// section into that file between its markers, keeping everything else.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/bench_results.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  std::string results_md, chart_link;
  CLI::App app{"bench_report: the benchmark table of benchmarks/run.sh's output folders"};
  app.add_option("OUT_DIR", dirs, "run.sh output folders (rows of later ones are added)")->required();
  app.add_option("--results", results_md,
                 "splice the section into this Markdown file (benchmarks/RESULTS.md)");
  app.add_option("--chart-link", chart_link,
                 "the chart PNG's path as the section links it (relative to --results)");
  CLI11_PARSE(app, argc, argv);
  try {
    const incept::bench::Results r = incept::bench::collect(dirs);
    const std::string table = incept::bench::console_table(r);
    std::fputs(table.c_str(), stdout);
    const std::string out = dirs[0];
    const std::string section = incept::bench::markdown(r, chart_link);
    incept::write_file_atomic(out + "/table.txt", table);
    incept::write_file_atomic(out + "/results.csv", incept::bench::csv(r));
    incept::write_file_atomic(out + "/results.md", section);
    incept::write_file_atomic(out + "/chart.json", incept::bench::chart_json(r));
    if (!results_md.empty()) {
      std::ifstream f(results_md);
      std::ostringstream old;
      if (f) old << f.rdbuf();
      incept::write_file_atomic(results_md, incept::bench::splice_section(old.str(), section));
      std::printf("section written into %s\n", results_md.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_report: %s\n", e.what());
    return 1;
  }
  return 0;
}

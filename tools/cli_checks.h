// Flag checks shared by the command-line tools: a lower bound with a plain message. CLI11's own
// ranges print the largest double as their upper end ("not in range 0.000000 to 1797...").
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <string>

namespace incept::cli {

// `lo` or more (above `lo` when `strictly`): "--flag: must be at least 0; got -5". Text that is no
// number passes here and fails the option's own conversion, which says so.
inline CLI::Validator at_least(double lo, bool strictly = false) {
  return CLI::Validator(
      [lo, strictly](std::string& v) -> std::string {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || (strictly ? x > lo : x >= lo)) return "";
        return fmt::format("must be {} {:g}; got {}", strictly ? "above" : "at least", lo, v);
      },
      fmt::format("{}{:g}", strictly ? ">" : ">=", lo));
}

inline CLI::Validator above(double lo) {
  return at_least(lo, true);
}

}  // namespace incept::cli

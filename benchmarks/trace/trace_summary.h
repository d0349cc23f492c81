// What bench_train_step --trace records per activity, and one step's timeline summarized
// (no CUDA: tests/test_bench_report.cpp checks the arithmetic).
#pragma once

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace incept::bench {

struct TraceRecord {
  std::string kind;  // kernel, memset, memcpy
  std::string name;  // the kernel's (mangled) name
  std::uint32_t stream = 0;
  std::uint64_t start_ns = 0, end_ns = 0;
  std::int64_t blocks = 0;
  int threads = 0;
};

// One step's timeline: span (first start to last end), busy (the union of the records'
// intervals: time with at least one record running), the record count, the streams, and the
// sum of the records' durations (more than busy where streams overlap).
struct TraceSummary {
  double span_us = 0, busy_us = 0, sum_us = 0;
  int records = 0, streams = 0;
};

inline TraceSummary summarize(std::vector<TraceRecord> step) {
  TraceSummary s;
  if (step.empty()) return s;
  std::sort(step.begin(), step.end(),
            [](const TraceRecord& a, const TraceRecord& b) { return a.start_ns < b.start_ns; });
  const std::uint64_t first = step.front().start_ns;
  std::uint64_t last = 0, covered_to = first, busy = 0, sum = 0;
  std::set<std::uint32_t> streams;
  for (const TraceRecord& r : step) {  // in start order
    last = std::max(last, r.end_ns);
    sum += r.end_ns - r.start_ns;
    if (r.end_ns > covered_to) {
      busy += r.end_ns - std::max(r.start_ns, covered_to);
      covered_to = r.end_ns;
    }
    streams.insert(r.stream);
  }
  s.span_us = double(last - first) / 1e3;
  s.busy_us = double(busy) / 1e3;
  s.sum_us = double(sum) / 1e3;
  s.records = int(step.size());
  s.streams = int(streams.size());
  return s;
}

}  // namespace incept::bench

// Kernel timelines of a few training steps through CUPTI's activity API (bench_train_step
// --trace): every kernel, memset and memcpy the GPU ran, graph nodes included, with its
// stream and start/end times, so the idle gaps and the busy lanes of a step can be read.
#pragma once

#include <cstdint>
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

// Collects records from construction to collect(); one at a time per process.
class KernelTrace {
 public:
  KernelTrace();
  ~KernelTrace();
  KernelTrace(const KernelTrace&) = delete;
  KernelTrace& operator=(const KernelTrace&) = delete;
  // Everything completed so far (call after synchronizing), in start order; clears the buffer.
  std::vector<TraceRecord> collect();
};

// One step's timeline summarized: span (first start to last end), busy (the union of the
// records' intervals), the record count and the sum of their durations.
struct TraceSummary {
  double span_us = 0, busy_us = 0, sum_us = 0;
  int records = 0, streams = 0;
};
TraceSummary summarize(const std::vector<TraceRecord>& step);

}  // namespace incept::bench

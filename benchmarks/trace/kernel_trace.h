// Kernel timelines of a few training steps through CUPTI's activity API (bench_train_step
// --trace): every kernel, memset and memcpy the GPU ran, graph nodes included, with its
// stream and start/end times, so the idle gaps and the busy lanes of a step can be read.
#pragma once

#include <vector>

#include "benchmarks/trace/trace_summary.h"

namespace incept::bench {

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

}  // namespace incept::bench

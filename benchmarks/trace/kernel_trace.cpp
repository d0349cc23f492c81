#include "benchmarks/trace/kernel_trace.h"

#include <cupti.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "engine/error.h"

namespace incept::bench {
namespace {

std::mutex g_mutex;
std::vector<TraceRecord>* g_records = nullptr;

void check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* s = nullptr;
  cuptiGetResultString(r, &s);
  throw Error(std::string("CUPTI ") + what + ": " + (s ? s : "unknown error"));
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  constexpr std::size_t kBytes = 8 << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBytes));
  *size = kBytes;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* rec = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (!g_records) continue;
    TraceRecord t;
    if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
      t = {"kernel",
           k->name ? k->name : "?",
           k->streamId,
           k->start,
           k->end,
           std::int64_t(k->gridX) * k->gridY * k->gridZ,
           k->blockX * k->blockY * k->blockZ};
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
      t = {"memset", "memset " + std::to_string(m->bytes), m->streamId, m->start, m->end, 0, 0};
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
      t = {"memcpy", "memcpy " + std::to_string(m->bytes), m->streamId, m->start, m->end, 0, 0};
    } else {
      continue;
    }
    g_records->push_back(std::move(t));
  }
  std::free(buffer);
}

}  // namespace

KernelTrace::KernelTrace() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_records) throw Error("KernelTrace: one trace at a time");
    g_records = new std::vector<TraceRecord>();
  }
  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "register callbacks");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enable kernels");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET), "enable memsets");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY), "enable memcpys");
}

KernelTrace::~KernelTrace() {
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(g_mutex);
  delete g_records;
  g_records = nullptr;
}

std::vector<TraceRecord> KernelTrace::collect() {
  check(cuptiActivityFlushAll(1), "flush");
  std::vector<TraceRecord> out;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    out.swap(*g_records);
  }
  std::sort(out.begin(), out.end(),
            [](const TraceRecord& a, const TraceRecord& b) { return a.start_ns < b.start_ns; });
  return out;
}

}  // namespace incept::bench

// Gradient buckets for data-parallel training: the parameter arena (NetPlan::params, laid out
// in forward layer order) cut into contiguous ranges taken from its END, so the buckets fill in
// the order backward produces gradients (the last layers first). Each bucket is all-reduced as
// soon as the backward of the earliest layer it covers has run, while backward continues with
// earlier layers: the communication overlaps the computation (PyTorch DDP's scheme: a small
// first bucket so the first all-reduce starts early, then buckets of about `bucket_bytes`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/net_plan.h"

namespace incept {

struct GradBucket {
  std::int64_t lo = 0, hi = 0;  // elements [lo, hi) of the parameter (= gradient) arena
  int ready_after = -1;         // index of the layer whose backward completes the bucket
  std::int64_t elems() const { return hi - lo; }
};

// Buckets in launch order (the last layers' first), covering [0, plan.param_elems) exactly and
// never splitting a parameter blob. `elem_bytes`: bytes per gradient element.
std::vector<GradBucket> plan_grad_buckets(const NetPlan& plan, std::size_t elem_bytes,
                                          std::size_t first_bucket_bytes = std::size_t(1) << 20,
                                          std::size_t bucket_bytes = std::size_t(25) << 20);

}  // namespace incept

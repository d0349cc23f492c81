// Gradient buckets (grad_buckets.h).
#include "engine/grad_buckets.h"

#include <algorithm>

#include "engine/check.h"

namespace incept {

std::vector<GradBucket> plan_grad_buckets(const NetPlan& plan, std::size_t elem_bytes,
                                          std::size_t first_bucket_bytes, std::size_t bucket_bytes) {
  std::vector<GradBucket> out;
  if (plan.params.empty()) return out;
  // Blobs from the end of the arena backwards; each bucket's upper end is where the previous
  // one started (so alignment padding between blobs is covered too), the last one starts at 0.
  GradBucket cur;
  cur.hi = plan.param_elems;
  std::size_t bytes = 0;
  for (int p = int(plan.params.size()) - 1; p >= 0; --p) {
    const ParamPlan& pp = plan.params[p];
    const int layer = plan.find_layer(pp.layer);
    if (layer < 0) throw Error("plan_grad_buckets: a parameter of an unknown layer " + pp.layer);
    cur.lo = pp.offset;
    cur.ready_after = cur.ready_after < 0 ? layer : std::min(cur.ready_after, layer);
    bytes += std::size_t(pp.count) * elem_bytes;
    const std::size_t limit = out.empty() ? first_bucket_bytes : bucket_bytes;
    // A bucket closes at a layer boundary: both blobs of a layer land in one bucket.
    const bool layer_starts_here = p == 0 || plan.params[p - 1].layer != pp.layer;
    if (bytes >= limit && layer_starts_here && p > 0) {
      out.push_back(cur);
      cur = GradBucket{};
      cur.hi = pp.offset;
      bytes = 0;
    }
  }
  cur.lo = 0;
  out.push_back(cur);
  return out;
}

}  // namespace incept

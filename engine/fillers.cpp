// Caffe fillers (fillers.h).
#include "engine/fillers.h"

#include <algorithm>
#include <cmath>

namespace incept {

double xavier_bound(const ParamPlan& p) {
  const double fan_in = double(p.count) / double(p.shape.empty() ? 1 : p.shape[0]);
  return std::sqrt(3.0 / fan_in);
}

template <typename T>
void fill_param(const ParamPlan& p, std::mt19937_64& rng, T* w) {
  switch (p.filler.kind) {
    case FillerKind::kConstant:
      std::fill(w, w + p.count, T(p.filler.value));
      break;
    case FillerKind::kXavier: {
      const double a = xavier_bound(p);
      std::uniform_real_distribution<double> u(-a, a);
      for (std::int64_t i = 0; i < p.count; ++i) w[i] = T(u(rng));
      break;
    }
    case FillerKind::kGaussian: {
      std::normal_distribution<double> g(0.0, p.filler.std);
      for (std::int64_t i = 0; i < p.count; ++i) w[i] = T(g(rng));
      break;
    }
  }
}

template <typename T>
void fill_params(const NetPlan& plan, std::uint64_t seed, T* params) {
  std::fill(params, params + plan.param_elems, T(0));
  std::mt19937_64 rng(seed);
  for (const ParamPlan& p : plan.params) fill_param(p, rng, params + p.offset);
}

template void fill_param<float>(const ParamPlan&, std::mt19937_64&, float*);
template void fill_param<double>(const ParamPlan&, std::mt19937_64&, double*);
template void fill_params<float>(const NetPlan&, std::uint64_t, float*);
template void fill_params<double>(const NetPlan&, std::uint64_t, double*);

}  // namespace incept

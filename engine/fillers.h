// Caffe's weight fillers for the parameter arena: constant, xavier (uniform in
// +-sqrt(3 / fan_in), fan_in = count / shape[0]; the prototxt's `std` is ignored as Caffe
// ignores it) and gaussian. Values come from a seeded std::mt19937_64, so a net initialises
// identically from the same seed (not bit-identical to Caffe's boost RNG, which nobody relies on).
#pragma once

#include <cstdint>
#include <random>

#include "engine/net_plan.h"

namespace incept {

// Fills one parameter blob (dense, p.count elements of T).
template <typename T>
void fill_param(const ParamPlan& p, std::mt19937_64& rng, T* w);

// Fills every parameter of the plan in layout order; padding between blobs is zeroed.
template <typename T>
void fill_params(const NetPlan& plan, std::uint64_t seed, T* params);

// The xavier bound sqrt(3 / fan_in) of a parameter shape.
double xavier_bound(const ParamPlan& p);

}  // namespace incept

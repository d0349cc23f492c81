// CPU reference SGD update (sgd_ref.h).
#include "kernels/sgd_ref.h"

namespace incept::ref {

template <typename T>
void sgd_update(std::int64_t count, T lr, T momentum, T decay, T* w, const T* g, T* v) {
  for (std::int64_t i = 0; i < count; ++i) {
    const T grad = g[i] + decay * w[i];
    v[i] = momentum * v[i] + lr * grad;
    w[i] -= v[i];
  }
}

template void sgd_update<float>(std::int64_t, float, float, float, float*, const float*, float*);
template void sgd_update<double>(std::int64_t, double, double, double, double*, const double*, double*);

}  // namespace incept::ref

// CPU reference ReLU and bias add/grad (relu_ref.h).
#include "kernels/relu_ref.h"

#include <cstdint>

namespace incept::ref {

template <typename T>
void relu_fwd(const Nchw& s, const T* x, T* y) {
  for (int n = 0; n < s.n; ++n) {
    const T* xn = x + n * s.nstride();
    T* yn = y + n * s.nstride();
    for (std::int64_t i = 0; i < s.image(); ++i) yn[i] = xn[i] > T(0) ? xn[i] : T(0);
  }
}

template <typename T>
void relu_bwd(const Nchw& s, const T* y, const T* dy, T* dx, bool accumulate) {
  for (int n = 0; n < s.n; ++n) {
    const T* yn = y + n * s.nstride();
    const T* dyn = dy + n * s.nstride();
    T* dxn = dx + n * s.nstride();
    for (std::int64_t i = 0; i < s.image(); ++i) {
      const T v = yn[i] > T(0) ? dyn[i] : T(0);
      dxn[i] = accumulate ? dxn[i] + v : v;
    }
  }
}

template <typename T>
void bias_add(const Nchw& s, const T* b, T* y) {
  const std::int64_t plane = std::int64_t(s.h) * s.w;
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c) {
      T* p = y + n * s.nstride() + c * plane;
      for (std::int64_t i = 0; i < plane; ++i) p[i] += b[c];
    }
}

template <typename T>
void bias_grad(const Nchw& s, const T* dy, T* db) {
  const std::int64_t plane = std::int64_t(s.h) * s.w;
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c) {
      const T* p = dy + n * s.nstride() + c * plane;
      T sum = 0;
      for (std::int64_t i = 0; i < plane; ++i) sum += p[i];
      db[c] += sum;
    }
}

#define INCEPT_INSTANTIATE(T)                                           \
  template void relu_fwd<T>(const Nchw&, const T*, T*);                 \
  template void relu_bwd<T>(const Nchw&, const T*, const T*, T*, bool); \
  template void bias_add<T>(const Nchw&, const T*, T*);                 \
  template void bias_grad<T>(const Nchw&, const T*, T*);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(double)
#undef INCEPT_INSTANTIATE

}  // namespace incept::ref

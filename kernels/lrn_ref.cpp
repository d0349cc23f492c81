// CPU reference LRN across channels (lrn_ref.h).
#include "kernels/lrn_ref.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace incept::ref {

template <typename T>
void lrn_fwd(const Nchw& xs, const T* x, const LrnGeom& g, const Nchw& ys, T* y, T* scale) {
  const std::int64_t plane = std::int64_t(xs.h) * xs.w;
  const int half = (g.local_size - 1) / 2;
  const T alpha_over_size = T(g.alpha) / T(g.local_size);
  for (int n = 0; n < xs.n; ++n) {
    const T* xn = x + n * xs.nstride();
    T* yn = y + n * ys.nstride();
    T* sn = scale + n * xs.image();
    for (int c = 0; c < xs.c; ++c) {
      T* sc = sn + c * plane;
      std::fill(sc, sc + plane, T(0));
      for (int cc = std::max(0, c - half); cc <= std::min(xs.c - 1, c + half); ++cc) {
        const T* xc = xn + cc * plane;
        for (std::int64_t i = 0; i < plane; ++i) sc[i] += xc[i] * xc[i];
      }
      const T* xc = xn + c * plane;
      T* yc = yn + c * plane;
      for (std::int64_t i = 0; i < plane; ++i) {
        sc[i] = T(g.k) + alpha_over_size * sc[i];
        yc[i] = xc[i] * std::pow(sc[i], -T(g.beta));
      }
    }
  }
}

template <typename T>
void lrn_bwd(const Nchw& xs, const T* x, const Nchw& ys, const T* y, const T* dy, const T* scale,
             const LrnGeom& g, T* dx, bool accumulate) {
  const std::int64_t plane = std::int64_t(xs.h) * xs.w;
  const int half = (g.local_size - 1) / 2;
  const T cache_ratio = T(2) * T(g.alpha) * T(g.beta) / T(g.local_size);
  std::vector<T> ratio(xs.image());  // dy * y / scale for one image, dense CHW
  std::vector<T> acc(plane);
  for (int n = 0; n < xs.n; ++n) {
    const T* xn = x + n * xs.nstride();
    const T* yn = y + n * ys.nstride();
    const T* dyn = dy + n * ys.nstride();
    const T* sn = scale + n * xs.image();
    T* dxn = dx + n * xs.nstride();
    for (std::int64_t i = 0; i < xs.image(); ++i) ratio[i] = dyn[i] * yn[i] / sn[i];
    for (int c = 0; c < xs.c; ++c) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int cc = std::max(0, c - half); cc <= std::min(xs.c - 1, c + half); ++cc) {
        const T* rc = ratio.data() + cc * plane;
        for (std::int64_t i = 0; i < plane; ++i) acc[i] += rc[i];
      }
      const std::int64_t o = c * plane;
      for (std::int64_t i = 0; i < plane; ++i) {
        const T v = dyn[o + i] * std::pow(sn[o + i], -T(g.beta)) - cache_ratio * xn[o + i] * acc[i];
        dxn[o + i] = accumulate ? dxn[o + i] + v : v;
      }
    }
  }
}

template void lrn_fwd<float>(const Nchw&, const float*, const LrnGeom&, const Nchw&, float*, float*);
template void lrn_fwd<double>(const Nchw&, const double*, const LrnGeom&, const Nchw&, double*, double*);
template void lrn_bwd<float>(const Nchw&, const float*, const Nchw&, const float*, const float*, const float*,
                             const LrnGeom&, float*, bool);
template void lrn_bwd<double>(const Nchw&, const double*, const Nchw&, const double*, const double*,
                              const double*, const LrnGeom&, double*, bool);

}  // namespace incept::ref

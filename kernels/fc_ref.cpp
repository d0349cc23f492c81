// CPU reference inner product (fc_ref.h).
#include "kernels/fc_ref.h"

#include "kernels/blas_ref.h"

namespace incept::ref {

template <typename T>
void fc_fwd(const Nchw& xs, const T* x, const FcGeom& g, const T* w, const T* b, const Nchw& ys, T* y) {
  const int k = int(xs.image()), m = g.num_output;
  gemm(false, true, xs.n, m, k, T(1), x, int(xs.nstride()), w, k, T(0), y, int(ys.nstride()));
  if (g.bias && b)
    for (int n = 0; n < xs.n; ++n)
      for (int j = 0; j < m; ++j) y[n * ys.nstride() + j] += b[j];
}

template <typename T>
void fc_bwd_data(const Nchw& ys, const T* dy, const FcGeom& g, const T* w, const Nchw& xs, T* dx,
                 bool accumulate) {
  const int k = int(xs.image()), m = g.num_output;
  gemm(false, false, xs.n, k, m, T(1), dy, int(ys.nstride()), w, k, accumulate ? T(1) : T(0), dx,
       int(xs.nstride()));
}

template <typename T>
void fc_bwd_filter(const Nchw& xs, const T* x, const Nchw& ys, const T* dy, const FcGeom& g, T* dw, T* db) {
  const int k = int(xs.image()), m = g.num_output;
  gemm(true, false, m, k, xs.n, T(1), dy, int(ys.nstride()), x, int(xs.nstride()), T(1), dw, k);
  if (g.bias && db)
    for (int n = 0; n < xs.n; ++n)
      for (int j = 0; j < m; ++j) db[j] += dy[n * ys.nstride() + j];
}

#define INCEPT_INSTANTIATE(T)                                                                          \
  template void fc_fwd<T>(const Nchw&, const T*, const FcGeom&, const T*, const T*, const Nchw&, T*);  \
  template void fc_bwd_data<T>(const Nchw&, const T*, const FcGeom&, const T*, const Nchw&, T*, bool); \
  template void fc_bwd_filter<T>(const Nchw&, const T*, const Nchw&, const T*, const FcGeom&, T*, T*);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(double)
#undef INCEPT_INSTANTIATE

}  // namespace incept::ref

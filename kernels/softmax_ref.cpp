// CPU reference softmax, softmax loss and accuracy (softmax_ref.h).
#include "kernels/softmax_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace incept::ref {
namespace {

void check_label(std::int32_t l, int classes) {
  if (l < 0 || l >= classes)
    throw std::out_of_range("label " + std::to_string(l) + " outside [0, " + std::to_string(classes) +
                            "): the classifier has fewer outputs "
                            "than the dataset has classes");
}

// Examples with a negative label are ignored; Caffe's normalization VALID divides by the
// others (never by less than one).
std::int64_t valid_count(const std::int32_t* label, std::int64_t n) {
  std::int64_t c = 0;
  for (std::int64_t i = 0; i < n; ++i) c += label[i] >= 0;
  return std::max<std::int64_t>(c, 1);
}

}  // namespace

template <typename T>
void softmax_fwd(const Nchw& xs, const T* x, const Nchw& ys, T* y) {
  const std::int64_t plane = std::int64_t(xs.h) * xs.w;
  for (int n = 0; n < xs.n; ++n)
    for (std::int64_t p = 0; p < plane; ++p) {
      const T* xi = x + n * xs.nstride() + p;
      T* yi = y + n * ys.nstride() + p;
      T mx = xi[0];
      for (int c = 1; c < xs.c; ++c) mx = std::max(mx, xi[c * plane]);
      T sum = 0;
      for (int c = 0; c < xs.c; ++c) {
        yi[c * plane] = std::exp(xi[c * plane] - mx);
        sum += yi[c * plane];
      }
      for (int c = 0; c < xs.c; ++c) yi[c * plane] /= sum;
    }
}

template <typename T>
void softmax_bwd(const Nchw& ys, const T* y, const T* dy, const Nchw& xs, T* dx, bool accumulate) {
  const std::int64_t plane = std::int64_t(ys.h) * ys.w;
  for (int n = 0; n < ys.n; ++n)
    for (std::int64_t p = 0; p < plane; ++p) {
      const T* yi = y + n * ys.nstride() + p;
      const T* dyi = dy + n * ys.nstride() + p;
      T* dxi = dx + n * xs.nstride() + p;
      T dot = 0;
      for (int c = 0; c < ys.c; ++c) dot += dyi[c * plane] * yi[c * plane];
      for (int c = 0; c < ys.c; ++c) {
        const T v = yi[c * plane] * (dyi[c * plane] - dot);
        dxi[c * plane] = accumulate ? dxi[c * plane] + v : v;
      }
    }
}

template <typename T>
T softmax_loss_fwd(const Nchw& xs, const T* x, const std::int32_t* label, T* prob) {
  const Nchw ps{xs.n, xs.c, xs.h, xs.w};
  softmax_fwd(xs, x, ps, prob);
  const std::int64_t plane = std::int64_t(xs.h) * xs.w;
  T loss = 0;
  for (int n = 0; n < xs.n; ++n)
    for (std::int64_t p = 0; p < plane; ++p) {
      const std::int32_t l = label[n * plane + p];
      if (l < 0) continue;  // ignored
      check_label(l, xs.c);
      const T pr = prob[n * ps.image() + l * plane + p];
      loss -= std::log(std::max(pr, T(std::numeric_limits<float>::min())));
    }
  return loss / T(valid_count(label, xs.n * plane));
}

template <typename T>
void softmax_loss_bwd(const Nchw& xs, const T* prob, const std::int32_t* label, T loss_weight, T* dx,
                      bool accumulate) {
  const std::int64_t plane = std::int64_t(xs.h) * xs.w;
  const T scale = loss_weight / T(valid_count(label, xs.n * plane));
  for (int n = 0; n < xs.n; ++n)
    for (int c = 0; c < xs.c; ++c)
      for (std::int64_t p = 0; p < plane; ++p) {
        const std::int64_t pi = n * xs.image() + c * plane + p;
        const std::int32_t l = label[n * plane + p];
        const T onehot = l == c ? T(1) : T(0);
        const T v = l < 0 ? T(0) : scale * (prob[pi] - onehot);
        T& d = dx[n * xs.nstride() + c * plane + p];
        d = accumulate ? d + v : v;
      }
}

template <typename T>
T accuracy(const Nchw& xs, const T* x, const std::int32_t* label, int top_k) {
  const std::int64_t plane = std::int64_t(xs.h) * xs.w;
  std::int64_t correct = 0;
  for (int n = 0; n < xs.n; ++n)
    for (std::int64_t p = 0; p < plane; ++p) {
      const T* xi = x + n * xs.nstride() + p;
      const std::int32_t l = label[n * plane + p];
      if (l < 0) continue;  // ignored
      check_label(l, xs.c);
      const T truth = xi[l * plane];
      int better = -1;  // the true class itself counts once
      for (int c = 0; c < xs.c && better < top_k; ++c) better += xi[c * plane] >= truth;
      if (better < top_k) ++correct;
    }
  return T(correct) / T(valid_count(label, xs.n * plane));
}

#define INCEPT_INSTANTIATE(T)                                                                 \
  template void softmax_fwd<T>(const Nchw&, const T*, const Nchw&, T*);                       \
  template void softmax_bwd<T>(const Nchw&, const T*, const T*, const Nchw&, T*, bool);       \
  template T softmax_loss_fwd<T>(const Nchw&, const T*, const std::int32_t*, T*);             \
  template void softmax_loss_bwd<T>(const Nchw&, const T*, const std::int32_t*, T, T*, bool); \
  template T accuracy<T>(const Nchw&, const T*, const std::int32_t*, int);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(double)
#undef INCEPT_INSTANTIATE

}  // namespace incept::ref

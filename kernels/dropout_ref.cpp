// CPU reference dropout with the counter-based mask (dropout_ref.h).
#include "kernels/dropout_ref.h"

namespace incept::ref {
namespace {

template <typename T>
void apply(const Nchw& s, const T* in, float ratio, const DropoutKey& key, T* out, bool accumulate) {
  const std::uint64_t stream = dropout_stream(key.seed, key.step, key.layer_id);
  const T scale = T(1) / (T(1) - T(ratio));
  for (int n = 0; n < s.n; ++n) {
    const T* a = in + n * s.nstride();
    T* b = out + n * s.nstride();
    const std::uint64_t base = (key.first_sample + std::uint64_t(n)) * std::uint64_t(s.image());
    for (std::int64_t i = 0; i < s.image(); ++i) {
      const T v = dropout_keep(stream, base + i, ratio) ? a[i] * scale : T(0);
      b[i] = accumulate ? b[i] + v : v;
    }
  }
}

}  // namespace

template <typename T>
void dropout_fwd(const Nchw& s, const T* x, float ratio, const DropoutKey& key, T* y) {
  apply(s, x, ratio, key, y, false);
}

template <typename T>
void dropout_bwd(const Nchw& s, const T* dy, float ratio, const DropoutKey& key, T* dx, bool accumulate) {
  apply(s, dy, ratio, key, dx, accumulate);
}

template void dropout_fwd<float>(const Nchw&, const float*, float, const DropoutKey&, float*);
template void dropout_fwd<double>(const Nchw&, const double*, float, const DropoutKey&, double*);
template void dropout_bwd<float>(const Nchw&, const float*, float, const DropoutKey&, float*, bool);
template void dropout_bwd<double>(const Nchw&, const double*, float, const DropoutKey&, double*, bool);

}  // namespace incept::ref

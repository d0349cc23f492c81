// Dropout kernels (dropout_gpu.h). The hash functions are the reference's constexpr
// functions (kernels/dropout_ref.h), compiled for the device with --expt-relaxed-constexpr,
// so host and device share one definition of the mask.
#include "engine/check.h"
#include "kernels/dropout_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void dropout_apply_kernel(long long total, long long image, long long nstride, const T* in,
                                     float ratio, float scale, std::uint64_t seed, std::uint64_t step_host,
                                     const std::uint64_t* step_dev, std::uint32_t layer_id,
                                     std::uint64_t index_offset, T* out, bool accumulate) {
  const std::uint64_t step = step_dev ? *step_dev : step_host;
  const std::uint64_t stream = ref::dropout_stream(seed, step, layer_id);
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long n = j / image, r = j - n * image;
    const long long o = n * nstride + r;
    float v = ref::dropout_keep(stream, index_offset + static_cast<std::uint64_t>(j), ratio)
                  ? to_f32(in[o]) * scale
                  : 0.f;
    if (accumulate) v += to_f32(out[o]);
    out[o] = from_f32<T>(v);
  }
}

template <typename T>
void launch(const Nchw& s, const T* in, float ratio, const ref::DropoutKey& key,
            const std::uint64_t* step_dev, T* out, bool accumulate, cudaStream_t stream) {
  if (s.count() == 0) return;
  const float scale = 1.f / (1.f - ratio);
  dropout_apply_kernel<T><<<grid_for(s.count(), kThreads), kThreads, 0, stream>>>(
      s.count(), s.image(), s.nstride(), in, ratio, scale, key.seed, key.step, step_dev, key.layer_id,
      key.first_sample * static_cast<std::uint64_t>(s.image()), out, accumulate);
  KERNEL_CHECK("dropout_apply_kernel");
}

}  // namespace

template <typename T>
void dropout_fwd(const Nchw& s, const T* x, float ratio, const ref::DropoutKey& key,
                 const std::uint64_t* step_dev, T* y, cudaStream_t stream) {
  launch(s, x, ratio, key, step_dev, y, false, stream);
}

template <typename T>
void dropout_bwd(const Nchw& s, const T* dy, float ratio, const ref::DropoutKey& key,
                 const std::uint64_t* step_dev, T* dx, bool accumulate, cudaStream_t stream) {
  launch(s, dy, ratio, key, step_dev, dx, accumulate, stream);
}

#define INCEPT_INSTANTIATE(T)                                                                              \
  template void dropout_fwd<T>(const Nchw&, const T*, float, const ref::DropoutKey&, const std::uint64_t*, \
                               T*, cudaStream_t);                                                          \
  template void dropout_bwd<T>(const Nchw&, const T*, float, const ref::DropoutKey&, const std::uint64_t*, \
                               T*, bool, cudaStream_t);
INCEPT_INSTANTIATE(float)
INCEPT_INSTANTIATE(__nv_bfloat16)
#undef INCEPT_INSTANTIATE

}  // namespace incept::kernels

// Input transform kernel (input_transform_gpu.h): one thread per output pixel reads the
// bytes of its source pixel and writes its channels (planes NCHW, neighbours NHWC).
#include "engine/check.h"
#include "kernels/input_transform_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T, int C>
__global__ void input_transform_fwd_kernel(int n_dim, int src_h, int src_w, int crop, float scale,
                                           const float* __restrict__ mean, float m0, float m1, float m2,
                                           const std::uint8_t* __restrict__ src,
                                           const CropParams* __restrict__ params, long long y_ns,
                                           bool channels_last, int y_pix, T* __restrict__ y) {
  const long long plane = static_cast<long long>(crop) * crop;
  const long long total = n_dim * plane;
  for (long long j = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(j / plane);
    const int r = static_cast<int>(j - n * plane);
    const int h = r / crop, w = r - h * crop;
    const CropParams p = params[n];
    const int sy = p.y0 + h, sx = p.x0 + (p.mirror ? crop - 1 - w : w);
    const std::uint8_t* px =
        src + (static_cast<long long>(n) * src_h * src_w + static_cast<long long>(sy) * src_w + sx) * C;
    const float mv[3] = {m0, m1, m2};
    const long long mo = static_cast<long long>(sy) * src_w + sx, mp = static_cast<long long>(src_h) * src_w;
    // NCHW: the channel planes; NHWC: neighbours at pixel r.
    T* out = y + n * y_ns + (channels_last ? static_cast<long long>(r) * y_pix : r);
    const long long step = channels_last ? 1 : plane;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const float m = mean ? mean[c * mp + mo] : mv[c];
      out[c * step] = from_f32<T>((static_cast<float>(px[c]) - m) * scale);
    }
  }
}

}  // namespace

template <typename T>
void input_transform_fwd(const InputTransform& t, const std::uint8_t* src, const CropParams* params,
                         const Nchw& ys, T* y, cudaStream_t stream) {
  if (t.channels != 1 && t.channels != 3)
    throw Error("input_transform_fwd: images must have 1 or 3 channels");
  if (ys.c != t.channels || ys.h != t.crop || ys.w != t.crop)
    throw Error("input_transform_fwd: the output view must be N x channels x crop x crop");
  if (t.crop > t.src_h || t.crop > t.src_w)
    throw Error("input_transform_fwd: crop is larger than the source images");
  if (ys.count() == 0) return;
  const std::size_t pixels = static_cast<std::size_t>(ys.n) * t.crop * t.crop;
  auto* kernel = t.channels == 3 ? input_transform_fwd_kernel<T, 3> : input_transform_fwd_kernel<T, 1>;
  kernel<<<grid_for(pixels, kThreads), kThreads, 0, stream>>>(
      ys.n, t.src_h, t.src_w, t.crop, t.scale, t.mean_image, t.mean_values[0], t.mean_values[1],
      t.mean_values[2], src, params, ys.nstride(), t.channels_last,
      static_cast<int>(ys.nstride() / (std::int64_t(t.crop) * t.crop)), y);
  KERNEL_CHECK("input_transform_fwd_kernel");
}

template void input_transform_fwd<float>(const InputTransform&, const std::uint8_t*, const CropParams*,
                                         const Nchw&, float*, cudaStream_t);
template void input_transform_fwd<__nv_bfloat16>(const InputTransform&, const std::uint8_t*,
                                                 const CropParams*, const Nchw&, __nv_bfloat16*,
                                                 cudaStream_t);

}  // namespace incept::kernels

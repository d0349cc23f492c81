// Input transform kernel (input_transform_gpu.h): one thread per output pixel reads the
// three bytes of its source pixel and writes its three channels (planes NCHW, neighbours NHWC).
#include "engine/check.h"
#include "kernels/input_transform_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
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
        src + (static_cast<long long>(n) * src_h * src_w + static_cast<long long>(sy) * src_w + sx) * 3;
    float mb = m0, mg = m1, mr = m2;
    if (mean) {
      const long long mo = static_cast<long long>(sy) * src_w + sx,
                      mp = static_cast<long long>(src_h) * src_w;
      mb = mean[mo];
      mg = mean[mp + mo];
      mr = mean[2 * mp + mo];
    }
    // NCHW: the three channel planes; NHWC: three neighbours at pixel r.
    T* out = y + n * y_ns + (channels_last ? static_cast<long long>(r) * y_pix : r);
    const long long step = channels_last ? 1 : plane;
    out[0] = from_f32<T>((static_cast<float>(px[0]) - mb) * scale);
    out[step] = from_f32<T>((static_cast<float>(px[1]) - mg) * scale);
    out[2 * step] = from_f32<T>((static_cast<float>(px[2]) - mr) * scale);
  }
}

}  // namespace

template <typename T>
void input_transform_fwd(const InputTransform& t, const std::uint8_t* src, const CropParams* params,
                         const Nchw& ys, T* y, cudaStream_t stream) {
  if (ys.c != 3 || ys.h != t.crop || ys.w != t.crop)
    throw Error("input_transform_fwd: the output view must be N x 3 x crop x crop");
  if (t.crop > t.src_h || t.crop > t.src_w)
    throw Error("input_transform_fwd: crop is larger than the source images");
  if (ys.count() == 0) return;
  const std::size_t pixels = static_cast<std::size_t>(ys.n) * t.crop * t.crop;
  input_transform_fwd_kernel<T><<<grid_for(pixels, kThreads), kThreads, 0, stream>>>(
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

// GPU launcher of Caffe's DataTransformer for a training batch: uint8 HWC BGR (or gray) images
// (as the loader decodes them into its pinned slot) to a crop of crop x crop pixels at a per-image
// offset, optionally mirrored, minus the mean (the mean image at the source pixel, as Caffe
// indexes it, or per-channel mean values), times scale, written NCHW as fp32 or bf16.
//   out[n, c, h, w] = (src[n, y0 + h, x0 + w', c] - mean[c, y0 + h, x0 + w']) * scale
//   w' = mirror ? crop - 1 - w : w
// The crop offsets and mirror flags come from the loader (device array, one per image) so
// the random draws stay on the host side of the reproducibility contract.
// Launchers never allocate or sync.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept::kernels {

struct CropParams {
  std::int32_t y0 = 0, x0 = 0;  // top-left of the crop window in the source image
  std::int32_t mirror = 0;      // 1: flip horizontally
};

struct InputTransform {
  int src_h = 256, src_w = 256;  // every source image is src_h x src_w x channels (dense HWC)
  int channels = 3;              // 3 (B, G, R) or 1 (gray)
  int crop = 224;
  float scale = 1.f;
  const float* mean_image = nullptr;       // device fp32 CHW [channels, src_h, src_w], or null
  float mean_values[3] = {0.f, 0.f, 0.f};  // used when mean_image is null (B, G, R)
  bool channels_last = false;  // write y NHWC (pixel stride nstride() / (crop * crop)) instead of NCHW
};

// src: device uint8 [N, src_h, src_w, channels]; params: device [N]; ys: view [N, channels, crop,
// crop], NCHW
// or (t.channels_last) NHWC.
template <typename T>
void input_transform_fwd(const InputTransform& t, const std::uint8_t* src, const CropParams* params,
                         const Nchw& ys, T* y, cudaStream_t stream);

}  // namespace incept::kernels

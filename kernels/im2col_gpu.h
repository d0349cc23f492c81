// GPU launchers of the channels-last im2col and the row padding around its GEMM (CPU
// reference and the formulas: kernels/im2col_ref.h). Used for the first convolution of a
// channels-last net, whose 3 input channels make cuDNN's NHWC kernels slow (conv1 on H100,
// bf16: 1.3 ms forward + 0.6 ms wgrad): im2col writes [N*Ho*Wo, ld] rows of R*S*C taps
// (ld a multiple of 8 so that GEMM rows are 16-byte aligned; cols aligned to 8 elements), and
// cuBLAS does the rest.
// x: channels-last view of dtype T; cols: dense [N*Ho*Wo, ld] of T; weights and their
// gradients as in the reference. Launchers never allocate or synchronize.
#pragma once

#include <cuda_runtime.h>

#include "kernels/dtype_gpu.h"
#include "kernels/shapes.h"

namespace incept::kernels {

template <typename T>
void im2col_nhwc(const Nchw& xs, const T* x, const ConvGeom& g, int ld, T* cols, cudaStream_t stream);

// dx (= or +=) col2im(cols): the adjoint of im2col_nhwc (every column entry added back to the
// input element it was copied from). dx: channels-last view, cols: dense [N*Ho*Wo, ld].
template <typename T>
void col2im_nhwc(const Nchw& xs, const T* cols, const ConvGeom& g, int ld, T* dx, bool accumulate,
                 cudaStream_t stream);

// wt[c][r'][s'][o] = w[o][kh - 1 - r'][kw - 1 - s'][c]: KRSC filters [cout, kh, kw, cin] turned
// into the filters of the data gradient of a stride-1 convolution, which is the convolution of
// the output gradient (cout channels, padding kh - 1 - pad_h, kw - 1 - pad_w) with them.
void flip_filters_nhwc(int cout, int kh, int kw, int cin, const float* w, float* wt, cudaStream_t stream);

template <typename T>
void pad_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst, cudaStream_t stream);
template <typename T>
void unpad_add_rows(int rows, int src_cols, int dst_cols, const T* src, T* dst, cudaStream_t stream);

}  // namespace incept::kernels

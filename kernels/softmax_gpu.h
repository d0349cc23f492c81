// GPU launcher of Caffe's Softmax layer (forward only: the deploy net's final `softmax`):
// y[n, :] = softmax(x[n, :]) over rows of K classes, x and y [N, K] row-major of dtype T
// (float or __nv_bfloat16: the classifier output, NCHW or NHWC with H = W = 1, which are the
// same), max-subtracted, fp32 arithmetic. Same definition as the CPU reference
// kernels/softmax_ref.h (softmax_fwd). One block per row; the block reductions run in a fixed
// order, so results are deterministic. x and y may alias. The launcher never allocates or syncs.
#pragma once

#include <cuda_runtime.h>

#include "kernels/dtype_gpu.h"

namespace incept::kernels {

template <typename T>
void softmax_fwd(int n, int k, const T* x, T* y, cudaStream_t stream);

}  // namespace incept::kernels

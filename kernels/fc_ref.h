// CPU reference of Caffe's InnerProduct layer (transpose = false), with OpenBLAS GEMM.
//
//   y[N, M] = x[N, K] * W[M, K]^T + b[M]
// x is an NCHW view flattened per image to K = C*H*W (its n_stride is the row stride);
// y is an NCHW view with C = M, H = W = 1. W is [M, K] dense (Caffe's blob layout), b[M].
// Gradient contract: dw, db accumulate (+=); dx is overwritten unless accumulate is true.
#pragma once

#include "kernels/shapes.h"

namespace incept::ref {

template <typename T>
void fc_fwd(const Nchw& xs, const T* x, const FcGeom& g, const T* w, const T* b, const Nchw& ys, T* y);

// dx (= or +=) dy * W
template <typename T>
void fc_bwd_data(const Nchw& ys, const T* dy, const FcGeom& g, const T* w, const Nchw& xs, T* dx,
                 bool accumulate = false);

// dw += dy^T * x; db += column sums of dy (db may be null)
template <typename T>
void fc_bwd_filter(const Nchw& xs, const T* x, const Nchw& ys, const T* dy, const FcGeom& g, T* dw, T* db);

}  // namespace incept::ref

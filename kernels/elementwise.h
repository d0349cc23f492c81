// Elementwise vector ops on the GPU (launchers) and their CPU references.
// Launchers never allocate and never synchronize.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/dtype_gpu.h"

namespace incept::kernels {

// y[i] = a * x[i] + b * y[i], fp32, n elements (any layout).
void axpby_fwd(std::size_t n, float a, const float* x, float b, float* y, cudaStream_t stream);
void axpby_ref(std::size_t n, float a, const float* x, float b, float* y);

// dst[i] += sum over r < rows of src[r * cols + i] for i < cols, added in row order with an
// fp32 accumulator (deterministic). S, T = float or __nv_bfloat16 (src, dst).
template <typename S, typename T>
void sum_rows_add(int rows, long long cols, const S* src, T* dst, cudaStream_t stream);
void sum_rows_add_ref(int rows, long long cols, const float* src, float* dst);

// dst[i] = float(src[i]) for i < n: bf16 widened to fp32 (exact).
void widen_bf16(std::size_t n, const __nv_bfloat16* src, float* dst, cudaStream_t stream);
void widen_bf16_ref(std::size_t n, const std::uint16_t* src_bits, float* dst);

// x[i] = float(bf16(x[i])) for i < n: each value rounded to bf16 (to nearest even, as the
// device's conversion does) and kept in fp32.
void round_to_bf16(std::size_t n, float* x, cudaStream_t stream);
void round_to_bf16_ref(std::size_t n, float* x);

// fp32 x = big + small exactly: big[i] is x[i] rounded to TF32 (10 mantissa bits, to nearest
// even; truncated where rounding would overflow to inf), small[i] = x[i] - big[i] (exact).
// inf and NaN go to big with small 0. The operand split of "3xTF32" fp32 GEMMs:
// A B ~ Ab Bb + Ab Bs + As Bb on TF32 tensor cores, with fp32-level error (the dropped As Bs
// and the TF32 rounding of the small parts are ~2^-22 of the product).
void split_tf32(std::size_t n, const float* x, float* big, float* small, cudaStream_t stream);
void split_tf32_ref(std::size_t n, const float* x, float* big, float* small);

// A kernel node that does what a memset node with these parameters does (elementSize 1, 2 or
// 4; width elements per row, height rows, pitch bytes apart), added to `graph` after `deps`.
// Why: in a CUDA graph, a memset node between two kernels stalls the stream for a few
// microseconds (cuBLAS and cuDNN issue 4-byte ones before their split-K kernels); a kernel
// node does not (see engine/graph_rewrite.h).
cudaGraphNode_t add_memset_kernel_node(cudaGraph_t graph, const cudaGraphNode_t* deps, std::size_t num_deps,
                                       const cudaMemsetParams& p);

}  // namespace incept::kernels

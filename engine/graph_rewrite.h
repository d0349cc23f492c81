// Rewrites of a captured CUDA graph before it is instantiated.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace incept {

// Replaces every memset node of `graph` of at most kMemsetKernelMaxBytes by a kernel node that
// writes the same bytes, with the same dependencies and dependents
// (kernels::add_memset_kernel_node). Returns how many.
//
// Why: cuBLAS and cuDNN issue 4-byte memsets before their split-K and stream-K kernels. In a
// graph each of those stalled its stream for ~5 us between two kernels (H200, CUPTI trace of
// GoogLeNet's step at batch 64 on one stream: 23 memsets, 141 us of the step's 165 us of gaps),
// where kernel-to-kernel is ~0.1 us. A node whose edges carry anything but default data is
// left alone. Larger memsets stay: CUDA already runs those as its own fast kernels (a 13 MiB
// one took 7 us as CUDA's, 105 us as an element-per-thread kernel).
constexpr std::size_t kMemsetKernelMaxBytes = 64 << 10;
int memset_nodes_to_kernels(cudaGraph_t graph);

}  // namespace incept

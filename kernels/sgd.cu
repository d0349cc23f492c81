// The fused SGD update over every parameter (sgd_gpu.h). Each block copies the segment
// table to shared memory and walks the flat buffer with a grid-stride loop; a thread finds
// its element's segment by binary search (neighbouring threads hit the same segment, so the
// search is warp-uniform almost everywhere). The update is memory-bound: ~20 bytes per
// parameter, 13.4 M parameters for GoogLeNet, ~0.1 ms on an H100.
#include "engine/check.h"
#include "kernels/device_facts.h"
#include "kernels/sgd_gpu.h"

namespace incept::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 16;  // grid-stride: enough blocks to fill any SM, no more

template <typename G>
__global__ void sgd_update_kernel(int n_segments, const SgdSegment* __restrict__ segments,
                                  std::int64_t n_total, const SgdStepParams* __restrict__ step,
                                  const G* __restrict__ grad, float* __restrict__ master,
                                  float* __restrict__ history, __nv_bfloat16* __restrict__ weights_lp) {
  extern __shared__ SgdSegment seg[];
  for (int i = threadIdx.x; i < n_segments; i += blockDim.x) seg[i] = segments[i];
  __syncthreads();
  const SgdStepParams p = *step;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n_total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    int lo = 0, hi = n_segments - 1;  // last segment with offset <= i
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (seg[mid].offset <= i)
        lo = mid;
      else
        hi = mid - 1;
    }
    const SgdSegment& s = seg[lo];
    if (i < s.offset || i >= s.offset + s.count) continue;
    const float w = master[i];
    const float g = to_f32(grad[i]) * p.grad_scale + p.weight_decay * s.decay_mult * w;
    const float h = p.momentum * history[i] + p.lr * s.lr_mult * g;
    history[i] = h;
    const float nw = w - h;
    master[i] = nw;
    if (weights_lp) weights_lp[i] = __float2bfloat16_rn(nw);
  }
}

}  // namespace

template <typename G>
void sgd_update(int n_segments, const SgdSegment* segments, std::int64_t n_total, const SgdStepParams* step,
                const G* grad, float* master, float* history, __nv_bfloat16* weights_lp,
                cudaStream_t stream) {
  if (n_total == 0 || n_segments == 0) return;
  if (n_segments > kSgdMaxSegments) throw Error("sgd_update: more parameter segments than kSgdMaxSegments");
  const std::size_t smem = sizeof(SgdSegment) * static_cast<std::size_t>(n_segments);
  sgd_update_kernel<G>
      <<<grid_for(static_cast<std::size_t>(n_total), kThreads, unsigned(kBlocksPerSm * sm_count())), kThreads,
         smem, stream>>>(n_segments, segments, n_total, step, grad, master, history, weights_lp);
  KERNEL_CHECK("sgd_update_kernel");
}

template void sgd_update<float>(int, const SgdSegment*, std::int64_t, const SgdStepParams*, const float*,
                                float*, float*, __nv_bfloat16*, cudaStream_t);
template void sgd_update<__nv_bfloat16>(int, const SgdSegment*, std::int64_t, const SgdStepParams*,
                                        const __nv_bfloat16*, float*, float*, __nv_bfloat16*, cudaStream_t);

}  // namespace incept::kernels

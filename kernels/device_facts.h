// Facts about the GPU that launchers size their grids by, read from the device instead of
// hard-coded from the card a kernel was tuned on (a P100 has 56 SMs, an H100 132, a MIG slice
// fewer). The first query per device reads cudaDevAttrMultiProcessorCount; later calls cost
// one cudaGetDevice and an atomic load: no allocation, no synchronization, nothing that a
// CUDA graph capture forbids. The value is fixed per device, so a grid derived from it (and
// a reduction order that depends on the grid) is the same on every run on that device.
#pragma once

namespace incept::kernels {

// Streaming multiprocessors of the current device. Throws incept::Error when no device is
// usable. Thread-safe.
int sm_count();
// The same for device `device`.
int sm_count(int device);
// Compute capability of the current device as major * 10 + minor (60 on a P100, 90 on an
// H100). Cached like sm_count.
int compute_capability();

}  // namespace incept::kernels

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
// H100), lowered to compute_capability_limit() where that is set. Cached like sm_count.
int compute_capability();
// The same for device `device`.
int compute_capability(int device);
// The card's own compute capability, whatever the limit.
int hardware_compute_capability(int device);

// INCEPT_CC_LIMIT=60 (also "6.0" or "sm_60") makes every choice incept takes by compute
// capability take it as if the GPU were at most that old: the defaults (a P100 trains in fp32,
// NCHW, with FMA GEMMs), which kernels may run (no tensor-core or cp.async kernel below 8.0),
// what tools print. It lets the paths of older GPUs run, and be tested, on a newer card; cuDNN
// and cuBLAS still pick their kernels for the real one. 0 when unset. Throws incept::Error
// naming the variable when its value is not a capability.
int compute_capability_limit();
// Parses a capability as INCEPT_CC_LIMIT takes it ("60", "6.0", "sm_60"); -1 when it is none.
int parse_compute_capability(const char* text);

}  // namespace incept::kernels

// The F(2x2, 3x3) Winograd transforms of one tile (kernels/winograd_ref.h has the algorithm):
// shared by the CPU reference and the GPU kernels, so the two transform the same way and the
// GPU kernels can be checked bit for bit. Every coefficient is 0, +-1 or 1/2: products by 1/2
// are exact, so a transform rounds only in its additions, in the fixed order written here.
#pragma once

#ifdef __CUDACC__
#define INCEPT_WINO_HD __host__ __device__ __forceinline__
#else
#define INCEPT_WINO_HD inline
#endif
#ifdef __CUDA_ARCH__
#define INCEPT_WINO_UNROLL _Pragma("unroll")
#else
#define INCEPT_WINO_UNROLL
#endif

namespace incept::wino {

// d (4) -> B^T d (4)
struct InputT {
  INCEPT_WINO_HD void operator()(const float* d, float* o) const {
    o[0] = d[0] - d[2];
    o[1] = d[1] + d[2];
    o[2] = d[2] - d[1];
    o[3] = d[1] - d[3];
  }
};
// g (3) -> G g (4)
struct FilterT {
  INCEPT_WINO_HD void operator()(const float* g, float* o) const {
    o[0] = g[0];
    o[1] = 0.5f * (g[0] + g[1] + g[2]);
    o[2] = 0.5f * (g[0] - g[1] + g[2]);
    o[3] = g[2];
  }
};
// m (4) -> A^T m (2)
struct OutputT {
  INCEPT_WINO_HD void operator()(const float* m, float* o) const {
    o[0] = m[0] + m[1] + m[2];
    o[1] = m[1] - m[2] - m[3];
  }
};
// dy (2) -> A dy (4): the adjoint of OutputT
struct OutputGradT {
  INCEPT_WINO_HD void operator()(const float* q, float* o) const {
    o[0] = q[0];
    o[1] = q[0] + q[1];
    o[2] = q[0] - q[1];
    o[3] = -q[1];
  }
};
// s (4) -> G^T s (3): the adjoint of FilterT
struct FilterGradT {
  INCEPT_WINO_HD void operator()(const float* s, float* o) const {
    o[0] = s[0] + 0.5f * (s[1] + s[2]);
    o[1] = 0.5f * (s[1] - s[2]);
    o[2] = 0.5f * (s[1] + s[2]) + s[3];
  }
};

// out = T in T^T for the I x I tile `in` and the 1-D transform f (I -> O values): f on each
// column, then on each row of the result.
template <int I, int O, class F>
INCEPT_WINO_HD void transform_2d(const float (&in)[I][I], float (&out)[O][O], F f) {
  float cols[O][I];
  INCEPT_WINO_UNROLL
  for (int j = 0; j < I; ++j) {
    float a[I], b[O];
    INCEPT_WINO_UNROLL
    for (int i = 0; i < I; ++i) a[i] = in[i][j];
    f(a, b);
    INCEPT_WINO_UNROLL
    for (int o = 0; o < O; ++o) cols[o][j] = b[o];
  }
  INCEPT_WINO_UNROLL
  for (int o = 0; o < O; ++o) f(cols[o], out[o]);
}

}  // namespace incept::wino

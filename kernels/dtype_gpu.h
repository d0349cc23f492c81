// Activation dtypes of the GPU path and the conversions every kernel uses.
// Activations (and their gradients) are float or __nv_bfloat16; arithmetic is always fp32
// (load -> to_f32 -> compute -> from_f32 -> store). Master weights, momentum and losses
// stay fp32. Host code may include this header (cuda_bf16.h is host-compilable).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace incept::kernels {

enum class DType { kF32 = 0, kBF16 = 1 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::kF32 ? 4 : 2;
}
constexpr const char* dtype_name(DType t) {
  return t == DType::kF32 ? "fp32" : "bf16";
}

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<__nv_bfloat16> {
  static constexpr DType value = DType::kBF16;
};

__host__ __device__ inline float to_f32(float v) {
  return v;
}
__host__ __device__ inline float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__host__ __device__ inline T from_f32(float v);
template <>
__host__ __device__ inline float from_f32<float>(float v) {
  return v;
}
template <>
__host__ __device__ inline __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Host-side conversions for tests and uploads (round to nearest even, like the device).
inline std::uint16_t f32_to_bf16_bits(float f) {
  std::uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_bits_to_f32(std::uint16_t b) {
  std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// V consecutive elements of T moved as one access (16 bytes on the vector paths of the
// channels-last kernels, or a single element). Arithmetic stays fp32.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
// Elements of T per 16-byte access.
template <typename T>
constexpr int kVec16 = int(16 / sizeof(T));
inline bool aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

// Grid size for a grid-stride loop over n items with `threads` per block.
inline unsigned grid_for(std::size_t n, int threads, unsigned cap = 65535u * 8) {
  std::size_t b = (n + threads - 1) / threads;
  if (b > cap) b = cap;
  return b == 0 ? 1u : static_cast<unsigned>(b);
}

}  // namespace incept::kernels

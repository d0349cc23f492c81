// What the channels-last kernels (bias_relu.cu, pool.cu, lrn.cu) need to address a view:
// its pixel and batch strides (see kernels/layout.h for the layout), and the launch-time check
// that an Nchw shape can be read channels-last with 32-bit element indices.
#pragma once

#include <cstdint>
#include <string>

#include "engine/check.h"
#include "kernels/shapes.h"

namespace incept::kernels {

struct NhwcArgs {
  int pix;       // pixel stride P (elements)
  long long ns;  // batch stride (elements)
};

inline NhwcArgs nhwc_args(const Nchw& s) {
  return NhwcArgs{static_cast<int>(s.nstride() / (std::int64_t(s.h) * s.w)), s.nstride()};
}

inline void check_nhwc_view(const Nchw& s, const char* what) {
  const std::int64_t hw = std::int64_t(s.h) * s.w;
  if (hw == 0 || s.nstride() % hw != 0 || s.nstride() / hw < s.c)
    throw Error(std::string(what) + ": " + std::to_string(s.n) + "x" + std::to_string(s.c) + "x" +
                std::to_string(s.h) + "x" + std::to_string(s.w) + " with batch stride " +
                std::to_string(s.nstride()) + " is not a channels-last view");
  if (std::int64_t(s.n) * s.nstride() >= (std::int64_t(1) << 31))
    throw Error(std::string(what) + ": tensor too large for 32-bit indexing");
}

}  // namespace incept::kernels

// CPU reference of the F(2x2, 3x3) Winograd pieces (winograd_ref.h), tile by tile.
#include "kernels/winograd_ref.h"

#include "kernels/layout.h"
#include "kernels/winograd_tile.h"

namespace incept::ref {

namespace {
struct TileAt {
  int n, i, j;  // image, tile row, tile column
};
TileAt tile_at(std::int64_t t, int h, int w) {
  const int th = (h + 1) / 2, tw = (w + 1) / 2;
  return {int(t / (std::int64_t(th) * tw)), int(t / tw % th), int(t % tw)};
}
}  // namespace

void winograd_filters(int k, int c, const float* w, bool data_grad, float* u) {
  const int rows = data_grad ? c : k, cols = data_grad ? k : c;
  for (int o = 0; o < k; ++o)
    for (int i = 0; i < c; ++i) {
      float g[3][3], t[4][4];
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s)
          g[r][s] = data_grad ? w[((std::int64_t(o) * 3 + 2 - r) * 3 + 2 - s) * c + i]
                              : w[((std::int64_t(o) * 3 + r) * 3 + s) * c + i];
      wino::transform_2d<3, 4>(g, t, wino::FilterT{});
      const std::int64_t at = data_grad ? std::int64_t(i) * cols + o : std::int64_t(o) * cols + i;
      for (int e = 0; e < 16; ++e) u[e * std::int64_t(rows) * cols + at] = t[e / 4][e % 4];
    }
}

void winograd_inputs(const Nchw& xs, const float* x, std::int64_t rows, float* v) {
  const std::int64_t tiles = winograd_tiles(xs.n, xs.h, xs.w);
  for (std::int64_t t = 0; t < rows; ++t)
    for (int c = 0; c < xs.c; ++c) {
      float d[4][4] = {}, o[4][4] = {};
      if (t < tiles) {
        const TileAt a = tile_at(t, xs.h, xs.w);
        for (int r = 0; r < 4; ++r)
          for (int s = 0; s < 4; ++s) {
            const int y = 2 * a.i - 1 + r, xx = 2 * a.j - 1 + s;
            if (y >= 0 && y < xs.h && xx >= 0 && xx < xs.w) d[r][s] = x[nhwc_offset(xs, a.n, c, y, xx)];
          }
        wino::transform_2d<4, 4>(d, o, wino::InputT{});
      }
      for (int e = 0; e < 16; ++e) v[(e * rows + t) * xs.c + c] = o[e / 4][e % 4];
    }
}

void winograd_outputs(const float* m, std::int64_t rows, const float* bias, bool relu, const Nchw& ys,
                      float* y, bool accumulate) {
  const std::int64_t tiles = winograd_tiles(ys.n, ys.h, ys.w);
  for (std::int64_t t = 0; t < tiles; ++t)
    for (int k = 0; k < ys.c; ++k) {
      float a[4][4], o[2][2];
      for (int e = 0; e < 16; ++e) a[e / 4][e % 4] = m[(e * rows + t) * ys.c + k];
      wino::transform_2d<4, 2>(a, o, wino::OutputT{});
      const TileAt at = tile_at(t, ys.h, ys.w);
      for (int r = 0; r < 2; ++r)
        for (int s = 0; s < 2; ++s) {
          const int yy = 2 * at.i + r, xx = 2 * at.j + s;
          if (yy >= ys.h || xx >= ys.w) continue;
          float& dst = y[nhwc_offset(ys, at.n, k, yy, xx)];
          float val = o[r][s];
          if (bias) val += bias[k];
          if (relu && !(val > 0.f)) val = 0.f;
          dst = accumulate ? dst + val : val;
        }
    }
}

void winograd_output_grads(const Nchw& ys, const float* dy, std::int64_t rows, float* z) {
  const std::int64_t tiles = winograd_tiles(ys.n, ys.h, ys.w);
  for (std::int64_t t = 0; t < rows; ++t)
    for (int k = 0; k < ys.c; ++k) {
      float q[2][2] = {}, o[4][4] = {};
      if (t < tiles) {
        const TileAt at = tile_at(t, ys.h, ys.w);
        for (int r = 0; r < 2; ++r)
          for (int s = 0; s < 2; ++s) {
            const int yy = 2 * at.i + r, xx = 2 * at.j + s;
            if (yy < ys.h && xx < ys.w) q[r][s] = dy[nhwc_offset(ys, at.n, k, yy, xx)];
          }
        wino::transform_2d<2, 4>(q, o, wino::OutputGradT{});
      }
      for (int e = 0; e < 16; ++e) z[(e * rows + t) * ys.c + k] = o[e / 4][e % 4];
    }
}

void winograd_filter_grads(int k, int c, int parts, const float* s, float* dw) {
  const std::int64_t mat = std::int64_t(k) * c;
  for (int o = 0; o < k; ++o)
    for (int i = 0; i < c; ++i) {
      float a[4][4], g[3][3];
      for (int e = 0; e < 16; ++e) {
        float sum = 0.f;
        for (int p = 0; p < parts; ++p)
          sum += s[(std::int64_t(e) * parts + p) * mat + std::int64_t(o) * c + i];
        a[e / 4][e % 4] = sum;
      }
      wino::transform_2d<4, 3>(a, g, wino::FilterGradT{});
      for (int r = 0; r < 3; ++r)
        for (int q = 0; q < 3; ++q) dw[((std::int64_t(o) * 3 + r) * 3 + q) * c + i] += g[r][q];
    }
}

}  // namespace incept::ref

// Line charts for the training report, drawn once through a small Canvas interface onto two
// backends: SVG text (report.html, where every point carries a <title> shown on hover) and
// cairo (report.png). One layout code path keeps the two pictures identical: same axes,
// ticks, colours, dashes and legend.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

typedef struct _cairo cairo_t;

namespace incept::chart {

struct Colour {
  std::uint8_t r = 0, g = 0, b = 0;
  std::string hex() const;  // "#1f77b4"
};
Colour colour_from_hex(std::uint32_t rgb);  // 0x1f77b4

// Width of `s` at font `size` in pixels, estimated: DejaVu Sans (the PNG's font) averages ~0.6 em
// per character; layouts use this (the canvases cannot measure text).
double text_width(const std::string& s, double size);

// Escapes & < > " ' for XML text and attribute values.
std::string xml_escape(const std::string& s);

enum class Anchor { kStart, kMiddle, kEnd };

struct Stroke {
  Colour colour;
  double width = 1.5;
  bool dashed = false;
  double opacity = 1.0;
};

// Drawing primitives in pixels (y down). Text y is the baseline.
class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void polyline(const std::vector<std::pair<double, double>>& xy, const Stroke& s) = 0;
  virtual void rect(double x, double y, double w, double h, const Colour* fill, const Stroke* stroke) = 0;
  // A point marker; `visible` false makes it a hover target only (nothing on a raster).
  // `title` is what hovering shows (SVG); empty for none.
  virtual void marker(double cx, double cy, double r, Colour c, bool visible, const std::string& title) = 0;
  virtual void text(double x, double y, const std::string& s, double size, Anchor a, Colour c, bool bold,
                    bool vertical) = 0;
  virtual void push_clip(double x, double y, double w, double h) = 0;
  virtual void pop_clip() = 0;
};

// Collects SVG elements; svg() wraps them in one <svg> element (well-formed XML).
// `id_prefix` keeps clip-path ids unique when several charts share one HTML page.
class SvgCanvas : public Canvas {
 public:
  explicit SvgCanvas(std::string id_prefix) : id_prefix_(std::move(id_prefix)) {}
  void polyline(const std::vector<std::pair<double, double>>& xy, const Stroke& s) override;
  void rect(double x, double y, double w, double h, const Colour* fill, const Stroke* stroke) override;
  void marker(double cx, double cy, double r, Colour c, bool visible, const std::string& title) override;
  void text(double x, double y, const std::string& s, double size, Anchor a, Colour c, bool bold,
            bool vertical) override;
  void push_clip(double x, double y, double w, double h) override;
  void pop_clip() override;
  std::string svg(double width, double height, const std::string& aria_label) const;

 private:
  std::string id_prefix_;
  std::string body_;
  int clips_ = 0, open_clips_ = 0;
};

// Draws onto a cairo context (not owned). Markers without `visible` draw nothing.
class CairoCanvas : public Canvas {
 public:
  explicit CairoCanvas(cairo_t* cr) : cr_(cr) {}
  void polyline(const std::vector<std::pair<double, double>>& xy, const Stroke& s) override;
  void rect(double x, double y, double w, double h, const Colour* fill, const Stroke* stroke) override;
  void marker(double cx, double cy, double r, Colour c, bool visible, const std::string& title) override;
  void text(double x, double y, const std::string& s, double size, Anchor a, Colour c, bool bold,
            bool vertical) override;
  void push_clip(double x, double y, double w, double h) override;
  void pop_clip() override;

 private:
  cairo_t* cr_;
};

// Renders width x height pixels (white background) with `draw` and returns the PNG bytes.
// Throws Error when cairo fails.
std::string render_png_impl(int width, int height, void (*draw)(Canvas&, const void*), const void* ctx);
template <typename Draw>
std::string render_png(int width, int height, const Draw& draw) {
  return render_png_impl(
      width, height, [](Canvas& c, const void* d) { (*static_cast<const Draw*>(d))(c); }, &draw);
}

// ---- charts ----------------------------------------------------------------------

struct Point {
  double x = 0, y = 0;  // data units; a non-finite y is skipped and breaks the line
  std::string title;    // hover text
};

struct Series {
  std::string name;  // legend text
  Colour colour;
  bool right_axis = false;  // plotted against y2
  bool dashed = false;
  bool markers = false;  // a visible marker at every point (validation points)
  bool step = false;     // the value holds until the next point (learning rate)
  double width = 1.5;
  double opacity = 1.0;
  std::vector<Point> points;
};

struct Axis {
  std::string label;
  bool log = false;  // decades; only where every value is > 0
  // Fixed range where both are finite; otherwise from the data (linear: from min(0, data)).
  double min = std::numeric_limits<double>::quiet_NaN(), max = std::numeric_limits<double>::quiet_NaN();
};

struct ChartSpec {
  Axis x, y, y2;
  bool has_y2 = false;
  // At least these margins (pixels) beside the plot, so stacked charts line up their plots.
  double margin_left = 0, margin_right = 0;
  std::vector<Series> series;
};

struct Box {
  double x = 0, y = 0, w = 0, h = 0;
};

// Ticks covering [lo, hi], rounded out to 1-2-5 steps (about `target` of them).
struct Ticks {
  double lo = 0, hi = 1, step = 1;
  std::vector<double> values;
};
Ticks linear_ticks(double lo, double hi, int target);
Ticks log_ticks(double lo, double hi);  // decades; lo, hi > 0
std::string tick_label(double v, const Ticks& t, bool log);

// Axes, grid, tick labels, axis labels and the series inside `box` (margins included).
// With a fixed right axis (accuracy 0..100) the left ticks take 4 or 5 intervals where they
// can, so both axes share the grid lines.
void draw_chart(Canvas& c, const Box& box, const ChartSpec& spec);
// The left and right margins draw_chart will use for `spec`.
std::pair<double, double> chart_margins(const ChartSpec& spec);
// The legend: a line sample and the name of every series, in columns that fill `width`.
double legend_height(const std::vector<Series>& series, double width);
void draw_legend(Canvas& c, const Box& box, const std::vector<Series>& series);

}  // namespace incept::chart

// Line charts onto SVG and cairo (chart.h).
#include "engine/chart.h"

#include <cairo.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "engine/check.h"

namespace incept::chart {
namespace {

constexpr double kTickSize = 12, kLabelSize = 13, kLegendSize = 12.5;
const Colour kInk{0x33, 0x33, 0x33}, kGrid{0xe3, 0xe3, 0xe3}, kFrame{0x99, 0x99, 0x99};

std::string px(double v) {
  return fmt::format("{:.1f}", v);
}

}  // namespace

double text_width(const std::string& s, double size) {
  return 0.6 * size * static_cast<double>(s.size());
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Colour::hex() const {
  return fmt::format("#{:02x}{:02x}{:02x}", r, g, b);
}

Colour colour_from_hex(std::uint32_t rgb) {
  return Colour{static_cast<std::uint8_t>(rgb >> 16), static_cast<std::uint8_t>(rgb >> 8),
                static_cast<std::uint8_t>(rgb)};
}

// ---- SVG -------------------------------------------------------------------------

void SvgCanvas::polyline(const std::vector<std::pair<double, double>>& xy, const Stroke& s) {
  if (xy.size() < 2) return;
  std::string pts;
  for (const auto& [x, y] : xy) pts += px(x) + "," + px(y) + " ";
  pts.pop_back();
  body_ += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="{}")", pts,
                       s.colour.hex(), s.width);
  if (s.dashed) body_ += R"( stroke-dasharray="7 4")";
  if (s.opacity < 1) body_ += fmt::format(R"( stroke-opacity="{}")", s.opacity);
  body_ += R"( stroke-linejoin="round"/>)"
           "\n";
}

void SvgCanvas::rect(double x, double y, double w, double h, const Colour* fill, const Stroke* stroke) {
  body_ += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="{}")", px(x), px(y), px(w), px(h),
                       fill ? fill->hex() : "none");
  if (stroke) body_ += fmt::format(R"( stroke="{}" stroke-width="{}")", stroke->colour.hex(), stroke->width);
  body_ += "/>\n";
}

void SvgCanvas::marker(double cx, double cy, double r, Colour c, bool visible, const std::string& title) {
  body_ += fmt::format(R"(<circle class="{}" cx="{}" cy="{}" r="{}" fill="{}")", visible ? "pt" : "hit",
                       px(cx), px(cy), r, c.hex());
  if (!visible) body_ += R"( fill-opacity="0")";  // shown by the page's CSS on hover only
  if (title.empty()) {
    body_ += "/>\n";
  } else {
    body_ += "><title>" + xml_escape(title) + "</title></circle>\n";
  }
}

void SvgCanvas::text(double x, double y, const std::string& s, double size, Anchor a, Colour c, bool bold,
                     bool vertical) {
  const char* anchor = a == Anchor::kStart ? "start" : a == Anchor::kMiddle ? "middle" : "end";
  body_ += fmt::format(R"(<text x="{}" y="{}" font-size="{}" text-anchor="{}" fill="{}")", px(x), px(y), size,
                       anchor, c.hex());
  if (bold) body_ += R"( font-weight="bold")";
  if (vertical) body_ += fmt::format(R"svg( transform="rotate(-90 {} {})")svg", px(x), px(y));
  body_ += '>';
  body_ += xml_escape(s);
  body_ += "</text>\n";
}

void SvgCanvas::push_clip(double x, double y, double w, double h) {
  const std::string id = fmt::format("{}-clip{}", id_prefix_, clips_++);
  body_ += fmt::format(R"(<clipPath id="{}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath>)", id,
                       px(x), px(y), px(w), px(h));
  body_ += fmt::format(R"svg(<g clip-path="url(#{})">)svg", id) + "\n";
  ++open_clips_;
}

void SvgCanvas::pop_clip() {
  if (open_clips_ == 0) return;
  body_ += "</g>\n";
  --open_clips_;
}

std::string SvgCanvas::svg(double width, double height, const std::string& aria_label) const {
  std::string out = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="{}" height="{}" role="img" )"
      R"(aria-label="{}" font-family="DejaVu Sans, Verdana, Arial, sans-serif">)"
      "\n",
      width, height, width, height, xml_escape(aria_label));
  out += body_;
  for (int i = 0; i < open_clips_; ++i) out += "</g>\n";
  return out + "</svg>";
}

// ---- cairo -----------------------------------------------------------------------

namespace {
void set_colour(cairo_t* cr, Colour c, double alpha = 1.0) {
  cairo_set_source_rgba(cr, c.r / 255.0, c.g / 255.0, c.b / 255.0, alpha);
}
}  // namespace

void CairoCanvas::polyline(const std::vector<std::pair<double, double>>& xy, const Stroke& s) {
  if (xy.size() < 2) return;
  cairo_new_path(cr_);
  cairo_move_to(cr_, xy[0].first, xy[0].second);
  for (std::size_t i = 1; i < xy.size(); ++i) cairo_line_to(cr_, xy[i].first, xy[i].second);
  set_colour(cr_, s.colour, s.opacity);
  cairo_set_line_width(cr_, s.width);
  cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
  const double dash[] = {7, 4};
  cairo_set_dash(cr_, dash, s.dashed ? 2 : 0, 0);
  cairo_stroke(cr_);
  cairo_set_dash(cr_, nullptr, 0, 0);
}

void CairoCanvas::rect(double x, double y, double w, double h, const Colour* fill, const Stroke* stroke) {
  cairo_new_path(cr_);
  cairo_rectangle(cr_, x, y, w, h);
  if (fill) {
    set_colour(cr_, *fill);
    if (stroke) {
      cairo_fill_preserve(cr_);
    } else {
      cairo_fill(cr_);
    }
  }
  if (stroke) {
    set_colour(cr_, stroke->colour, stroke->opacity);
    cairo_set_line_width(cr_, stroke->width);
    cairo_stroke(cr_);
  }
  cairo_new_path(cr_);
}

void CairoCanvas::marker(double cx, double cy, double r, Colour c, bool visible, const std::string&) {
  if (!visible) return;
  cairo_new_path(cr_);
  cairo_arc(cr_, cx, cy, r, 0, 2 * M_PI);
  set_colour(cr_, c);
  cairo_fill(cr_);
}

void CairoCanvas::text(double x, double y, const std::string& s, double size, Anchor a, Colour c, bool bold,
                       bool vertical) {
  cairo_save(cr_);
  cairo_select_font_face(cr_, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr_, size);
  cairo_text_extents_t ext;
  cairo_text_extents(cr_, s.c_str(), &ext);
  const double shift = a == Anchor::kStart ? 0 : a == Anchor::kMiddle ? ext.x_advance / 2 : ext.x_advance;
  cairo_translate(cr_, x, y);
  if (vertical) cairo_rotate(cr_, -M_PI / 2);
  cairo_move_to(cr_, -shift, 0);
  set_colour(cr_, c);
  cairo_show_text(cr_, s.c_str());
  cairo_restore(cr_);
}

void CairoCanvas::push_clip(double x, double y, double w, double h) {
  cairo_save(cr_);
  cairo_new_path(cr_);
  cairo_rectangle(cr_, x, y, w, h);
  cairo_clip(cr_);
}

void CairoCanvas::pop_clip() {
  cairo_restore(cr_);
}

namespace {
cairo_status_t append_png_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}
}  // namespace

std::string render_png_impl(int width, int height, void (*draw)(Canvas&, const void*), const void* ctx) {
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surface);
  std::string png;
  cairo_status_t st = cairo_status(cr);
  if (st == CAIRO_STATUS_SUCCESS) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    CairoCanvas canvas(cr);
    try {
      draw(canvas, ctx);
    } catch (...) {
      cairo_destroy(cr);
      cairo_surface_destroy(surface);
      throw;
    }
    st = cairo_status(cr);
    cairo_surface_flush(surface);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png_stream(surface, append_png_bytes, &png);
  }
  cairo_destroy(cr);
  cairo_surface_destroy(surface);
  if (st != CAIRO_STATUS_SUCCESS)
    throw Error(fmt::format("drawing the report PNG failed: {}", cairo_status_to_string(st)));
  return png;
}

// ---- ticks -----------------------------------------------------------------------

Ticks linear_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + (lo == 0 ? 1 : std::abs(lo));
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  Ticks t;
  t.step = step;
  t.lo = std::floor(lo / step + 1e-9) * step;
  t.hi = std::ceil(hi / step - 1e-9) * step;
  for (double v = t.lo; v <= t.hi + step * 1e-6; v += step)
    t.values.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

Ticks log_ticks(double lo, double hi) {
  Ticks t;
  double a = std::floor(std::log10(lo) + 1e-9), b = std::ceil(std::log10(hi) - 1e-9);
  if (b <= a) b = a + 1;
  t.lo = std::pow(10.0, a);
  t.hi = std::pow(10.0, b);
  t.step = 10;
  for (double e = a; e <= b; e += 1) t.values.push_back(std::pow(10.0, e));
  return t;
}

std::string tick_label(double v, const Ticks& t, bool log) {
  if (log || (v != 0 && std::abs(v) < 1e-3) || std::abs(v) >= 1e6) return fmt::format("{:g}", v);
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(t.step) - 1e-9)));
  // 2.5-steps need one decimal more than their magnitude.
  const double scaled = t.step * std::pow(10.0, decimals);
  return fmt::format("{:.{}f}", v, std::abs(scaled - std::round(scaled)) > 1e-6 ? decimals + 1 : decimals);
}

// ---- chart -----------------------------------------------------------------------

namespace {

struct Scale {
  double lo = 0, hi = 1, p0 = 0, p1 = 1;
  bool log = false;
  double operator()(double v) const {
    const double a = log ? std::log10(v) : v, l = log ? std::log10(lo) : lo, h = log ? std::log10(hi) : hi;
    return p0 + (a - l) / (h - l) * (p1 - p0);
  }
};

bool usable(double v, bool log) {
  return std::isfinite(v) && (!log || v > 0);
}

double widest_label(const Ticks& t, bool log);

bool fixed(const Axis& a) {
  return std::isfinite(a.min) && std::isfinite(a.max);
}

// The range of the drawable values on one axis; false where there are none.
bool data_range(const Axis& axis, const std::vector<const Series*>& on_axis, bool is_x, double* lo,
                double* hi) {
  *lo = INFINITY;
  *hi = -INFINITY;
  for (const Series* s : on_axis)
    for (const Point& p : s->points) {
      if (!usable(p.y, !is_x && axis.log) || !std::isfinite(p.x)) continue;
      *lo = std::min(*lo, is_x ? p.x : p.y);
      *hi = std::max(*hi, is_x ? p.x : p.y);
    }
  return *lo <= *hi;
}

// The ticks of one axis: fixed, or from the drawable values of the series on it.
Ticks axis_ticks(const Axis& axis, const std::vector<const Series*>& on_axis, bool is_x, int target) {
  if (fixed(axis)) {
    Ticks t = linear_ticks(axis.min, axis.max, target);
    t.lo = axis.min;
    t.hi = axis.max;
    std::erase_if(t.values, [&](double v) { return v < axis.min - 1e-12 || v > axis.max + 1e-12; });
    return t;
  }
  double lo = 0, hi = 0;
  const bool any = data_range(axis, on_axis, is_x, &lo, &hi);
  if (axis.log) return any ? log_ticks(lo, hi) : log_ticks(1e-3, 1e-2);
  if (!any) return linear_ticks(0, 1, target);
  lo = std::min(lo, 0.0);
  if (!is_x && hi > lo) hi += 0.04 * (hi - lo);  // keep the top curve off the frame
  return linear_ticks(lo, hi, target);
}

// Left ticks with 4 or 5 intervals where a 1-2-2.5-5 step allows it, so that the right axis
// (a fixed range such as 0..100 %) can put its ticks on the same grid lines.
bool shared_grid(const Ticks& left, Ticks* aligned) {
  const double span = left.hi - left.lo;
  if (!(span > 0)) return false;
  const double mag = std::pow(10.0, std::floor(std::log10(span / 5)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0, 20.0}) {
    const double step = m * mag;
    const double lo = std::floor(left.lo / step + 1e-9) * step, hi = std::ceil(left.hi / step - 1e-9) * step;
    const long n = std::lround((hi - lo) / step);
    if (n < 4 || n > 5 || hi < left.hi - 1e-12 || lo > left.lo + 1e-12) continue;
    // Not more than a quarter of the height wasted compared with the plain ticks.
    if (hi - lo > 1.25 * span) return false;
    *aligned = Ticks{lo, hi, step, {}};
    for (long i = 0; i <= n; ++i)
      aligned->values.push_back(std::abs(lo + i * step) < step * 1e-9 ? 0 : lo + i * step);
    return true;
  }
  return false;
}

struct AxesLayout {
  Ticks x, y, y2;
  double left = 0, right = 0;  // margins
};

AxesLayout axes_layout(const ChartSpec& spec) {
  std::vector<const Series*> left, right, all;
  for (const Series& s : spec.series) {
    (s.right_axis && spec.has_y2 ? right : left).push_back(&s);
    all.push_back(&s);
  }
  AxesLayout a;
  a.x = axis_ticks(spec.x, all, true, 10);
  a.y = axis_ticks(spec.y, left, false, 6);
  if (spec.has_y2) {
    a.y2 = axis_ticks(spec.y2, right, false, 5);
    Ticks aligned;
    if (fixed(spec.y2) && !fixed(spec.y) && !spec.y.log && !spec.y2.log && shared_grid(a.y, &aligned)) {
      a.y = aligned;
      const auto n = static_cast<double>(aligned.values.size() - 1);
      a.y2 = Ticks{spec.y2.min, spec.y2.max, (spec.y2.max - spec.y2.min) / n, {}};
      for (std::size_t i = 0; i < aligned.values.size(); ++i)
        a.y2.values.push_back(spec.y2.min + static_cast<double>(i) * a.y2.step);
    }
  }
  a.left = std::max(spec.margin_left, widest_label(a.y, spec.y.log) + 34);
  a.right = std::max(spec.margin_right, spec.has_y2 ? widest_label(a.y2, spec.y2.log) + 34 : 24);
  return a;
}

double widest_label(const Ticks& t, bool log) {
  double w = 0;
  for (double v : t.values) w = std::max(w, text_width(tick_label(v, t, log), kTickSize));
  return w;
}

// Points of one series in pixels, split where a value is not drawable; steps for held values.
std::vector<std::vector<std::pair<double, double>>> segments(const Series& s, const Scale& sx,
                                                             const Scale& sy) {
  std::vector<std::vector<std::pair<double, double>>> out(1);
  for (const Point& p : s.points) {
    if (!usable(p.y, sy.log) || !std::isfinite(p.x)) {
      if (!out.back().empty()) out.emplace_back();
      continue;
    }
    const double x = sx(p.x), y = sy(p.y);
    if (s.step && !out.back().empty()) out.back().emplace_back(x, out.back().back().second);
    out.back().emplace_back(x, y);
  }
  return out;
}

}  // namespace

void draw_chart(Canvas& c, const Box& box, const ChartSpec& spec) {
  const AxesLayout a = axes_layout(spec);
  const Ticks &tx = a.x, &ty = a.y, &ty2 = a.y2;
  const Box plot{box.x + a.left, box.y + 10, box.w - a.left - a.right, box.h - 10 - 44};
  const Scale sx{tx.lo, tx.hi, plot.x, plot.x + plot.w, false};
  const Scale sy{ty.lo, ty.hi, plot.y + plot.h, plot.y, spec.y.log};
  const Scale sy2{ty2.lo, ty2.hi, plot.y + plot.h, plot.y, spec.y2.log};

  // Grid, frame, ticks and labels.
  const Colour white{255, 255, 255};
  c.rect(plot.x, plot.y, plot.w, plot.h, &white, nullptr);
  const Stroke grid{kGrid, 1.0};
  for (double v : tx.values) c.polyline({{sx(v), plot.y}, {sx(v), plot.y + plot.h}}, grid);
  for (double v : ty.values) c.polyline({{plot.x, sy(v)}, {plot.x + plot.w, sy(v)}}, grid);
  const Stroke frame{kFrame, 1.0};
  c.rect(plot.x, plot.y, plot.w, plot.h, nullptr, &frame);
  for (double v : tx.values)
    c.text(sx(v), plot.y + plot.h + 16, tick_label(v, tx, false), kTickSize, Anchor::kMiddle, kInk, false,
           false);
  for (double v : ty.values)
    c.text(plot.x - 6, sy(v) + 4, tick_label(v, ty, spec.y.log), kTickSize, Anchor::kEnd, kInk, false, false);
  for (double v : ty2.values)
    c.text(plot.x + plot.w + 6, sy2(v) + 4, tick_label(v, ty2, spec.y2.log), kTickSize, Anchor::kStart, kInk,
           false, false);
  c.text(plot.x + plot.w / 2, box.y + box.h - 8, spec.x.label, kLabelSize, Anchor::kMiddle, kInk, false,
         false);
  c.text(box.x + 15, plot.y + plot.h / 2, spec.y.label, kLabelSize, Anchor::kMiddle, kInk, false, true);
  if (spec.has_y2)
    c.text(box.x + box.w - 8, plot.y + plot.h / 2, spec.y2.label, kLabelSize, Anchor::kMiddle, kInk, false,
           true);

  // Lines, then hover targets, then visible markers on top (they take the hover first).
  c.push_clip(plot.x - 5, plot.y - 5, plot.w + 10, plot.h + 10);
  struct Placed {
    const Point* p;
    Colour colour;
    double x, y, r;
  };
  std::vector<Placed> hidden, shown;
  for (const Series& s : spec.series) {
    const Scale& ys = s.right_axis && spec.has_y2 ? sy2 : sy;
    for (const auto& seg : segments(s, sx, ys))
      c.polyline(seg, Stroke{s.colour, s.width, s.dashed, s.opacity});
    std::vector<const Point*> drawable;
    for (const Point& p : s.points)
      if (usable(p.y, ys.log) && std::isfinite(p.x)) drawable.push_back(&p);
    // Markers shrink, then go (hover targets stay), where they would run into a bead chain.
    const double spacing = plot.w / static_cast<double>(std::max<std::size_t>(1, drawable.size()));
    const double r = drawable.size() == 1 ? s.width + 1.5
                     : !s.markers         ? 0
                     : spacing >= 10      ? s.width + 1.5
                     : spacing >= 5       ? 2
                                          : 0;
    for (const Point* p : drawable)
      (r > 0 ? shown : hidden).push_back(Placed{p, s.colour, sx(p->x), ys(p->y), r});
  }
  for (const Placed& m : hidden) c.marker(m.x, m.y, 4, m.colour, false, m.p->title);
  for (const Placed& m : shown) c.marker(m.x, m.y, m.r, m.colour, true, m.p->title);
  c.pop_clip();
  if (hidden.empty() && shown.empty())
    c.text(plot.x + plot.w / 2, plot.y + plot.h / 2, "no data yet", kLabelSize, Anchor::kMiddle, kFrame,
           false, false);
}

std::pair<double, double> chart_margins(const ChartSpec& spec) {
  const AxesLayout a = axes_layout(spec);
  return {a.left, a.right};
}

// ---- legend ----------------------------------------------------------------------

namespace {
constexpr double kSample = 28, kRow = 20;

void legend_grid(const std::vector<Series>& series, double width, double* col_w, int* rows) {
  double w = 0;
  for (const Series& s : series) w = std::max(w, text_width(s.name, kLegendSize));
  *col_w = kSample + 8 + w + 22;
  const int n = static_cast<int>(series.size());
  const int cols = std::clamp(static_cast<int>(width / *col_w), 1, std::max(1, n));
  *rows = (n + cols - 1) / cols;
}
}  // namespace

double legend_height(const std::vector<Series>& series, double width) {
  if (series.empty()) return 0;
  double col_w = 0;
  int rows = 0;
  legend_grid(series, width, &col_w, &rows);
  return rows * kRow + 6;
}

void draw_legend(Canvas& c, const Box& box, const std::vector<Series>& series) {
  if (series.empty()) return;
  double col_w = 0;
  int rows = 0;
  legend_grid(series, box.w, &col_w, &rows);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const double x = box.x + static_cast<double>(i / rows) * col_w;
    const double y = box.y + static_cast<double>(i % rows) * kRow + kRow / 2 + 2;
    c.polyline({{x, y}, {x + kSample, y}}, Stroke{s.colour, std::max(s.width, 2.0), s.dashed, s.opacity});
    if (s.markers) c.marker(x + kSample / 2, y, s.width + 1.5, s.colour, true, "");
    c.text(x + kSample + 6, y + 4.5, s.name, kLegendSize, Anchor::kStart, kInk, false, false);
  }
}

}  // namespace incept::chart

// Resolves a NetSpec into a NetPlan (net_plan.h): stage filtering, shapes, concat slices,
// gradient flow and fan-out accumulation, lifetime-based arena placement, parameter layout.
#include "engine/net_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "engine/check.h"
#include "engine/layers.h"
#include "engine/memory_plan.h"

namespace incept {
namespace {

std::int64_t align_up(std::int64_t v, std::int64_t a) {
  return (v + a - 1) / a * a;
}

// Builds layers, blobs and params (no offsets yet).
void build_graph(const NetSpec& spec, const PlanOptions& opt, NetPlan& plan) {
  std::map<std::string, int> latest;  // blob name -> current blob id
  auto add_blob = [&](BlobPlan b) {
    plan.blobs.push_back(std::move(b));
    const int id = int(plan.blobs.size()) - 1;
    plan.blobs[id].root = id;
    latest[plan.blobs[id].name] = id;
    return id;
  };
  const Nchw data_shape{opt.batch, opt.channels, opt.height, opt.width};
  plan.data_blob = add_blob({.name = spec.data_top, .shape = data_shape, .is_input = true});
  if (opt.stage != Stage::kDeploy)
    plan.label_blob = add_blob({.name = spec.label_top, .shape = {opt.batch, 1, 1, 1}, .is_label = true});

  std::int64_t param_at = 0;
  for (const LayerSpec& ls : spec.layers) {
    if (!ls.in_stage(opt.stage)) continue;
    LayerPlan lp;
    lp.name = ls.name;
    lp.params = ls.params;
    if (auto* fc = std::get_if<FcParams>(&lp.params); fc && fc->geom.num_output == 0) {
      if (opt.num_classes <= 0)
        throw Error(fmt::format("layer {}: classifier size unset; give the class count", ls.name));
      fc->geom.num_output = opt.num_classes;
    }
    const int index = int(plan.layers.size());
    std::vector<Nchw> in;
    for (const std::string& b : ls.bottoms) {
      auto it = latest.find(b);
      if (it == latest.end())
        throw Error(fmt::format("layer {}: bottom '{}' is not produced by an earlier layer of stage {}",
                                ls.name, b, stage_name(opt.stage)));
      lp.bottoms.push_back(it->second);
      in.push_back(plan.blobs[it->second].shape);
    }
    std::vector<Nchw> out;
    try {
      out = infer_shapes(lp.params, in);
    } catch (const Error& e) {
      throw Error(fmt::format("layer {}: {}", ls.name, e.what()));
    }
    if (out.size() != ls.tops.size())
      throw Error(fmt::format("layer {} ({}): {} top(s) expected, {} given", ls.name, kind_name(lp.kind()),
                              out.size(), ls.tops.size()));
    for (std::size_t t = 0; t < out.size(); ++t) {
      const bool in_place = !ls.bottoms.empty() && ls.tops[t] == ls.bottoms[0];
      if (in_place) {
        if (!can_run_in_place(lp.params))
          throw Error(fmt::format("layer {} ({}) cannot run in place", ls.name, kind_name(lp.kind())));
        lp.tops.push_back(lp.bottoms[0]);
      } else {
        lp.tops.push_back(add_blob({.name = ls.tops[t], .shape = out[t], .producer = index}));
      }
    }
    const auto shapes = param_shapes(lp.params, in);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      ParamPlan pp;
      pp.layer = ls.name;
      pp.index = int(i);
      pp.shape = shapes[i];
      pp.count = 1;
      for (int d : shapes[i]) pp.count *= d;
      pp.offset = param_at;
      param_at += align_up(pp.count, opt.align);
      if (i < ls.param_specs.size()) {
        pp.lr_mult = ls.param_specs[i].lr_mult;
        pp.decay_mult = ls.param_specs[i].decay_mult;
        pp.filler = ls.param_specs[i].filler;
      }
      lp.param_ids.push_back(int(plan.params.size()));
      plan.params.push_back(std::move(pp));
    }
    lp.saved_elems = saved_elems(lp.params, in);
    lp.workspace_elems = workspace_elems(lp.params, in);
    lp.loss_weight = loss_weight(lp.params);
    plan.workspace_elems = std::max(plan.workspace_elems, lp.workspace_elems);
    plan.layers.push_back(std::move(lp));
  }
  plan.param_elems = param_at;
}

// Turns every Concat bottom into a channel slice of the Concat's top.
void alias_concats(NetPlan& plan) {
  for (std::size_t l = 0; l < plan.layers.size(); ++l) {
    const LayerPlan& lp = plan.layers[l];
    if (lp.kind() != LayerKind::kConcat) continue;
    int c0 = 0;
    for (int b : lp.bottoms) {
      BlobPlan& bb = plan.blobs[b];
      if (bb.is_input || bb.root != b)
        throw Error(
            fmt::format("layer {}: bottom '{}' cannot become a concat slice (net input or "
                        "already a slice)",
                        lp.name, bb.name));
      for (std::size_t o = 0; o < plan.layers.size(); ++o) {
        const LayerPlan& other = plan.layers[o];
        const bool reads = std::count(other.bottoms.begin(), other.bottoms.end(), b) > 0;
        const bool in_place = std::count(other.tops.begin(), other.tops.end(), b) > 0;
        if (o != l && reads && !in_place)
          throw Error(
              fmt::format("layer {}: concat bottom '{}' is also read by {}; give it its "
                          "own copy",
                          lp.name, bb.name, other.name));
      }
      bb.root = lp.tops[0];
      bb.root_channel = c0;
      c0 += bb.shape.c;
    }
  }
  // Resolve chains (a concat of concats) to the outermost root.
  for (BlobPlan& b : plan.blobs) {
    while (plan.blobs[b.root].root != b.root) {
      b.root_channel += plan.blobs[b.root].root_channel;
      b.root = plan.blobs[b.root].root;
    }
  }
}

// Which bottoms get gradients, fan-out accumulation, and gradients nobody writes.
void plan_gradients(NetPlan& plan, std::vector<char>& root_has_diff) {
  const int nl = int(plan.layers.size());
  root_has_diff.assign(plan.blobs.size(), 0);
  for (LayerPlan& lp : plan.layers) {
    lp.bottom_diff.assign(lp.bottoms.size(), 0);
    lp.accumulate.assign(lp.bottoms.size(), 0);
    lp.run_backward = plan.options.training && has_backward(lp.params);
    if (!lp.run_backward) continue;
    for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
      const BlobPlan& b = plan.blobs[lp.bottoms[i]];
      if (b.is_input || b.is_label || !propagates_to(lp.params, int(i))) continue;
      lp.bottom_diff[i] = 1;
      root_has_diff[b.root] = 1;
    }
  }
  // Writers of each root's gradient in backward order: the first overwrites, the rest add.
  // In-place layers transform the gradient where it is; a concat writes nothing (its
  // bottoms' gradients are slices of its top's).
  std::vector<char> written(plan.blobs.size(), 0);
  for (int l = nl - 1; l >= 0; --l) {
    LayerPlan& lp = plan.layers[l];
    if (!lp.run_backward) continue;
    for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
      if (!lp.bottom_diff[i]) continue;
      const int b = lp.bottoms[i];
      const int root = plan.blobs[b].root;
      const bool in_place = std::count(lp.tops.begin(), lp.tops.end(), b) > 0;
      const bool concat_slice = lp.kind() == LayerKind::kConcat && plan.blobs[lp.tops[0]].root == root;
      if (in_place || concat_slice) continue;
      lp.accumulate[i] = written[root];
      written[root] = 1;
    }
  }
  // A gradient that its producer reads but no consumer writes is zeroed before the first
  // backward that touches it.
  for (int r = 0; r < int(plan.blobs.size()); ++r) {
    if (written[r]) continue;
    for (int l = nl - 1; l >= 0; --l) {
      LayerPlan& lp = plan.layers[l];
      if (!lp.run_backward || !reads_top_diff(lp.params)) continue;
      const bool touches =
          std::any_of(lp.tops.begin(), lp.tops.end(), [&](int t) { return plan.blobs[t].root == r; });
      if (!touches) continue;
      root_has_diff[r] = 1;
      lp.zero_diffs.push_back(r);
      break;
    }
  }
}

// Inception modules: a Concat whose bottoms are each the end of a chain of single-input layers
// from one shared blob, the chains' layers making up the index range up to the Concat.
void find_regions(NetPlan& plan) {
  const int nl = int(plan.layers.size());
  std::vector<int> consumers(plan.blobs.size(), 0);  // layers reading a blob, in-place writers not counted
  for (const LayerPlan& lp : plan.layers)
    for (int b : lp.bottoms)
      if (std::count(lp.tops.begin(), lp.tops.end(), b) == 0) ++consumers[b];
  for (int c = 0; c < nl; ++c) {
    const LayerPlan& cat = plan.layers[c];
    if (cat.kind() != LayerKind::kConcat || cat.bottoms.size() < 2) continue;
    std::vector<int> branch_of(nl, -1);
    int fork = -1, first = c;
    bool ok = true;
    for (std::size_t i = 0; i < cat.bottoms.size() && ok; ++i) {
      int blob = cat.bottoms[i];
      for (;;) {  // the layers writing `blob` (producer, then in-place ones), then its producer's input
        const int p = plan.blobs[blob].producer;
        if (p < 0 || p >= c || consumers[blob] != 1) {
          ok = false;
          break;
        }
        for (int l = p; l < c; ++l) {
          const LayerPlan& lp = plan.layers[l];
          if (std::count(lp.tops.begin(), lp.tops.end(), blob) == 0) continue;
          if (branch_of[l] >= 0 && branch_of[l] != int(i)) ok = false;
          branch_of[l] = int(i);
          first = std::min(first, l);
        }
        const LayerPlan& pl = plan.layers[p];
        if (!ok || pl.bottoms.size() != 1 || plan.blobs[pl.bottoms[0]].is_label) {
          ok = false;
          break;
        }
        const int x = pl.bottoms[0];
        if (consumers[x] > 1) {  // the shared input
          if (fork >= 0 && fork != x) ok = false;
          fork = x;
          break;
        }
        blob = x;
      }
    }
    if (!ok || fork < 0 || plan.blobs[fork].producer >= first) continue;
    BranchRegion r;
    r.first = first;
    r.last = c;
    r.fork = fork;
    for (int l = first; l < c && ok; ++l) {
      if (branch_of[l] < 0) ok = false;
      r.branch.push_back(branch_of[l]);
    }
    r.branch.push_back(0);
    if (ok && (plan.regions.empty() || plan.regions.back().last < first))
      plan.regions.push_back(std::move(r));
  }
}

// PlanOptions::side_heads: the layers between a region's fork producer and its first layer join
// it as one more branch when they form a side head: each reads only the fork, labels and blobs
// of the head, and nothing after the head reads the head's blobs.
void add_side_heads(NetPlan& plan) {
  const int nl = int(plan.layers.size());
  std::vector<int> last_reader(plan.blobs.size(), -1);
  for (int l = 0; l < nl; ++l)
    for (int b : plan.layers[l].bottoms) last_reader[b] = std::max(last_reader[b], l);
  for (BranchRegion& r : plan.regions) {
    const int h0 = plan.blobs[r.fork].producer + 1, h1 = r.first;  // the head: [h0, h1)
    if (h0 <= 0 || h0 >= h1) continue;
    bool ok = true, reads_fork = false;
    for (int l = h0; l < h1 && ok; ++l) {
      for (int b : plan.layers[l].bottoms) {
        const int p = plan.blobs[b].producer;
        if (b == r.fork)
          reads_fork = true;
        else if (!plan.blobs[b].is_label && (p < h0 || p >= h1))
          ok = false;
      }
      for (int t : plan.layers[l].tops)
        if (last_reader[t] >= h1 || plan.blobs[t].root != t) ok = false;
    }
    if (!ok || !reads_fork) continue;
    const int head = r.branches();
    r.branch.insert(r.branch.begin(), std::size_t(h1 - h0), head);
    r.first = h0;
  }
}

void place_memory(NetPlan& plan, const std::vector<char>& root_has_diff) {
  const int nl = int(plan.layers.size());
  const bool train = plan.options.training;
  const int end = train ? 2 * nl - 1 : nl - 1;
  auto bwd = [&](int l) { return 2 * nl - 1 - l; };
  const int nb = int(plan.blobs.size());
  std::vector<int> first(nb, end + 1), last(nb, -1), dfirst(nb, end + 1), dlast(nb, -1);
  std::vector<char> consumed(nb, 0);
  for (int l = 0; l < nl; ++l) {
    const LayerPlan& lp = plan.layers[l];
    for (int b : lp.bottoms) consumed[b] = 1;
    auto touch = [&](int b) {
      const int r = plan.blobs[b].root;
      first[r] = std::min(first[r], plan.blobs[b].is_input ? 0 : l);
      last[r] = std::max(last[r], lp.run_backward ? bwd(l) : l);
      if (lp.run_backward && root_has_diff[r]) {
        dfirst[r] = std::min(dfirst[r], bwd(l));
        dlast[r] = std::max(dlast[r], bwd(l));
      }
    };
    for (int b : lp.bottoms) touch(b);
    for (int b : lp.tops) touch(b);
  }
  for (int b = 0; b < nb; ++b) {
    BlobPlan& bp = plan.blobs[b];
    bp.is_output = !consumed[b] && !bp.is_input && !bp.is_label;
    if (bp.is_output) last[bp.root] = end;
    if (bp.is_input) first[b] = 0;
  }
  // A lifetime that begins or ends inside a region's forward or backward span is widened to the
  // whole span: any two buffers touched in one region then overlap and never share memory.
  auto widen = [&](int a, int b) {
    for (const BranchRegion& r : plan.regions) {
      const int spans[2][2] = {{r.first, r.last}, {bwd(r.last), bwd(r.first)}};
      for (const auto& s : spans) {
        if (!train && s[0] > nl - 1) continue;
        if (a >= s[0] && a <= s[1]) a = s[0];
        if (b >= s[0] && b <= s[1]) b = s[1];
      }
    }
    return std::pair{a, b};
  };
  MemoryPlan mem(plan.options.align);
  auto add = [&](std::int64_t elems, int a, int b) {
    const auto [wa, wb] = widen(a, b);
    return mem.add(elems, wa, wb);
  };
  std::vector<int> value_id(nb, -1), diff_id(nb, -1), saved_id(nl, -1);
  for (int b = 0; b < nb; ++b) {
    const BlobPlan& bp = plan.blobs[b];
    if (bp.root != b || bp.is_label) continue;
    value_id[b] = add(bp.shape.count(), first[b], std::max(last[b], first[b]));
    if (root_has_diff[b] && dlast[b] >= 0) diff_id[b] = add(bp.shape.count(), dfirst[b], dlast[b]);
  }
  for (int l = 0; l < nl; ++l) {
    const LayerPlan& lp = plan.layers[l];
    if (lp.saved_elems > 0) saved_id[l] = add(lp.saved_elems, l, lp.run_backward ? bwd(l) : l);
  }
  mem.place();
  plan.activation_elems = mem.arena_elems();
  plan.unshared_elems = mem.total_elems();
  for (int b = 0; b < nb; ++b) {
    BlobPlan& bp = plan.blobs[b];
    if (bp.is_label) continue;
    const BlobPlan& root = plan.blobs[bp.root];
    const std::int64_t slice = std::int64_t(bp.root_channel) * bp.shape.h * bp.shape.w;
    bp.offset = mem.offset(value_id[bp.root]) + slice;
    if (diff_id[bp.root] >= 0) bp.diff_offset = mem.offset(diff_id[bp.root]) + slice;
    if (bp.root != b) bp.shape.n_stride = root.shape.image();
  }
  for (int l = 0; l < nl; ++l)
    if (saved_id[l] >= 0) plan.layers[l].saved_offset = mem.offset(saved_id[l]);
}

}  // namespace

NetPlan plan_net(const NetSpec& spec, const PlanOptions& options) {
  NetPlan plan;
  plan.name = spec.name;
  plan.options = options;
  const DataLayerSpec* data = spec.data_layer(options.stage == Stage::kDeploy ? Stage::kVal : options.stage);
  if (plan.options.batch <= 0) plan.options.batch = data ? data->batch_size : 0;
  if (plan.options.height <= 0) plan.options.height = data ? data->crop_size : 0;
  if (plan.options.width <= 0) plan.options.width = data ? data->crop_size : 0;
  if (plan.options.stage != Stage::kTrain) plan.options.training = false;  // val, deploy: forward only
  if (plan.options.batch <= 0 || plan.options.height <= 0 || plan.options.width <= 0)
    throw Error(fmt::format("net {}: batch and input size must be given (batch {}, {}x{})", spec.name,
                            plan.options.batch, plan.options.height, plan.options.width));
  build_graph(spec, plan.options, plan);
  alias_concats(plan);
  std::vector<char> root_has_diff;
  plan_gradients(plan, root_has_diff);
  if (plan.options.branch_regions) {
    find_regions(plan);
    if (plan.options.side_heads) add_side_heads(plan);
  }
  place_memory(plan, root_has_diff);
  return plan;
}

int BranchRegion::branches() const {
  return branch.empty() ? 0 : 1 + *std::max_element(branch.begin(), branch.end());
}

const BranchRegion* NetPlan::region_of(int l) const {
  for (const BranchRegion& r : regions)
    if (l >= r.first && l <= r.last) return &r;
  return nullptr;
}

std::int64_t NetPlan::param_count() const {
  std::int64_t n = 0;
  for (const ParamPlan& p : params) n += p.count;
  return n;
}

int NetPlan::blob(const std::string& name) const {
  for (int b = int(blobs.size()) - 1; b >= 0; --b)
    if (blobs[b].name == name) return b;
  throw Error(fmt::format("net {}: no blob named '{}'", this->name, name));
}

int NetPlan::find_layer(const std::string& layer_name) const {
  for (int l = 0; l < int(layers.size()); ++l)
    if (layers[l].name == layer_name) return l;
  return -1;
}

int NetPlan::conv_count() const {
  return int(std::count_if(layers.begin(), layers.end(),
                           [](const LayerPlan& l) { return l.kind() == LayerKind::kConvolution; }));
}

std::string NetPlan::memory_summary(int bytes) const {
  const double mib = 1024.0 * 1024.0;
  return fmt::format("activations {:.1f} MiB (unshared {:.1f}), params {:.1f} MiB x3, workspace {:.1f} MiB",
                     activation_elems * bytes / mib, unshared_elems * bytes / mib, param_elems * bytes / mib,
                     workspace_elems * bytes / mib);
}

}  // namespace incept

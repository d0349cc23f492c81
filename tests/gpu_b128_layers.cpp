// Part of test_gpu_b128: every layer of GoogLeNet alone on the GPU in bf16 at batch 128 with
// bench_train_step's options, fed the CPU reference's own inputs to that layer (its bottoms'
// values and its tops' gradients from a double forward+backward of the whole net, rounded to
// bf16), against the reference of that one layer computed in double on the same rounded
// inputs. Whole-net comparisons in bf16 are dominated by noise that one layer passes to the next
// (flipped ReLU masks and max-pool winners); here the inputs are identical, so the only
// differences are the GPU's own roundings (~2e-3 relative per rounded output) and an error is
// pinned to the layer that makes it. A convolution runs with the ReLU the GPU folds into it,
// as one unit; a Concat is free on the GPU (its bottoms are slices of its top) and is skipped.
// A bottom whose gradient several layers add to (inception inputs, auxiliary heads) is given
// the reference's partial sum first, so the accumulating path runs, and this layer's
// contribution (the sum minus that) is what is compared.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "engine/fillers.h"
#include "engine/layers.h"
#include "gpu_b128.h"
#include "testing/sharded_cpu_net.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using kernels::DType;

// bf16 rounds each output to 8 significant bits: ~1.6e-3 relative L2 error for one rounding,
// a little more where the GPU rounds twice (a cuDNN output in the staging buffer, then bias and
// ReLU). A layer's gradient scaled by 1.1 is 1e-1 off.
constexpr double kLayerLimit = 1e-2;
// A ReLU folded into a convolution passes the gradient where the GPU's output is positive. Where
// the value before the ReLU is near zero, the GPU's rounding can put it on the other side of
// zero than the reference (a "flipped" mask element): the whole upstream gradient of that
// element is then passed or dropped, an O(1) difference that no arithmetic error explains. On
// an H200 (2026-11-30) the inception 3x3/5x5 convolutions showed input gradients 1.6e-2 to
// 2.8e-2 off and weight gradients 4e-3 to 8.6e-3 off against the reference's own mask (their
// bias gradients too, 4.6e-3, which involve no convolution), while conv2/3x3 stayed at 1.7e-3:
// cuDNN writes those layers' output in bf16 to a staging buffer and the bias is added after, so
// near z = 0 (conv ~ -bias) the value carries the conv's rounding (|bias| x 2^-9), where layers
// with the bias in the GEMM epilogue or cuDNN's fused bias+ReLU round once, after the sum. So
// the gradients are compared with the reference backward through the GPU's mask, and every
// flipped element must lie where the reference's pre-ReLU value is within kFlipBand of zero.
constexpr double kFlipBand = 2e-2;       // x the RMS of the layer's pre-ReLU values
constexpr double kBf16Unit = 1.0 / 256;  // bf16 relative rounding error is at most this

std::vector<double> rounded_bf16(std::vector<double> v) {
  for (double& x : v) x = b128::round_bf16(float(x));
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// One unit's inputs, from the reference, rounded to bf16 (dense NCHW, whole batch).
struct UnitInputs {
  std::vector<std::vector<double>> x;      // per bottom (empty: labels)
  std::vector<std::vector<double>> dy;     // per top (empty: a loss, which seeds its own gradient)
  std::vector<std::vector<double>> prior;  // per bottom: its gradient so far where it accumulates
};

// One unit's outputs: top 0's values (or the loss), each bottom's gradient (this layer's
// contribution where it accumulates), each parameter blob's gradient.
struct UnitOutputs {
  std::vector<double> y;
  std::vector<double> z;  // a convolution with its ReLU: the values before the ReLU
  std::vector<std::vector<double>> dx;
  std::vector<std::vector<double>> dw;
};

Nchw dense_of(Nchw s, int n) {
  s.n = n;
  s.n_stride = 0;
  return s;
}

// The reference of layer l (and the ReLU after it when `relu`) in double on the inputs, over
// `threads` chunks of images (a loss normalizes by its batch: one chunk).
// `mask` (with `relu`): the ReLU's backward passes the gradient where mask > 0 instead of where
// the reference's own output is positive (the GPU's output: the mask the GPU took).
UnitOutputs reference_unit(const NetPlan& plan, int l, bool relu, const UnitInputs& in,
                           const std::vector<double>& weights, const std::vector<std::int32_t>& labels,
                           std::uint64_t dropout_seed, std::uint64_t step, int threads,
                           const std::vector<double>* mask = nullptr) {
  const LayerPlan& lp = plan.layers[l];
  const int batch = plan.options.batch;
  const bool loss = lp.kind() == LayerKind::kSoftmaxWithLoss;
  const int chunks = loss ? 1 : threads;
  const Nchw top = dense_of(plan.blobs[lp.tops[0]].shape, batch);
  UnitOutputs r;
  r.y.assign(loss ? 1 : std::size_t(top.count()), 0.0);
  std::vector<double> conv_out(relu ? r.y.size() : 0), dz(relu ? r.y.size() : 0);
  for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
    const std::size_t n =
        lp.bottom_diff[i] ? std::size_t(plan.blobs[lp.bottoms[i]].shape.image()) * batch : 0;
    r.dx.push_back(lp.accumulate[i] ? in.prior[i] : std::vector<double>(n, 0.0));
  }
  std::vector<std::vector<std::vector<double>>> dw(chunks);
  std::vector<std::thread> pool;
  for (int c = 0; c < chunks; ++c)
    pool.emplace_back([&, c] {
      const int n0 = batch * c / chunks, n1 = batch * (c + 1) / chunks;
      LayerArgs<double> a;
      for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
        const BlobPlan& b = plan.blobs[lp.bottoms[i]];
        const Nchw s = dense_of(b.shape, n1 - n0);
        a.in_shape.push_back(s);
        a.in.push_back(b.is_label ? nullptr : in.x[i].data() + n0 * s.image());
        a.in_diff.push_back(lp.bottom_diff[i] ? r.dx[i].data() + n0 * s.image() : nullptr);
        a.accumulate.push_back(lp.accumulate[i]);
      }
      const Nchw ts = dense_of(top, n1 - n0);
      const std::int64_t at = n0 * ts.image();
      double loss_value = 0;
      a.out_shape.push_back(ts);
      a.out.push_back(loss ? &loss_value : (relu ? conv_out.data() : r.y.data()) + at);
      a.out_diff.push_back(loss ? nullptr : (relu ? dz.data() : in.dy[0].data()) + at);
      for (int p : lp.param_ids) {
        dw[c].emplace_back(plan.params[p].count, 0.0);
        a.w.push_back(const_cast<double*>(weights.data()) + plan.params[p].offset);
        a.w_diff.push_back(dw[c].back().data());
      }
      a.labels = labels.data() + n0;
      std::vector<double> saved(std::max<std::int64_t>(saved_elems(lp.params, a.in_shape), 1));
      std::vector<double> work(std::max<std::int64_t>(workspace_elems(lp.params, a.in_shape), 1));
      a.saved = saved.data();
      a.workspace = work.data();
      a.training = true;
      a.dropout_key = {dropout_seed, step, std::uint32_t(l), std::uint64_t(n0)};
      forward_ref(lp.params, a);
      if (relu) {  // the folded ReLU (layer l + 1): out of place here, same arithmetic
        LayerArgs<double> ra;
        ra.in_shape = ra.out_shape = {ts};
        ra.in = {conv_out.data() + at};
        ra.out = {r.y.data() + at};
        ra.in_diff = {dz.data() + at};
        ra.out_diff = {in.dy[0].data() + at};
        ra.accumulate = {0};
        forward_ref(plan.layers[l + 1].params, ra);
        if (mask)
          for (std::int64_t i = 0; i < ts.count(); ++i)
            dz[at + i] = (*mask)[at + i] > 0 ? in.dy[0][at + i] : 0.0;
        else
          backward_ref(plan.layers[l + 1].params, ra);
      }
      backward_ref(lp.params, a);
      if (loss) r.y[0] = loss_value;
    });
  for (auto& t : pool) t.join();
  if (relu) r.z = std::move(conv_out);
  for (std::size_t k = 0; k < lp.param_ids.size(); ++k) {
    r.dw.push_back(dw[0][k]);
    for (int c = 1; c < chunks; ++c)
      for (std::size_t i = 0; i < r.dw[k].size(); ++i) r.dw[k][i] += dw[c][k][i];
  }
  return r;
}

// The same unit on the GPU: the inputs written into its arena, layer l's forward and backward.
UnitOutputs gpu_unit(GpuNet& gpu, int l, const UnitInputs& in) {
  const NetPlan& plan = gpu.plan();
  const LayerPlan& lp = plan.layers[l];
  const bool loss = lp.kind() == LayerKind::kSoftmaxWithLoss;
  for (std::size_t i = 0; i < lp.bottoms.size(); ++i)
    if (!plan.blobs[lp.bottoms[i]].is_label) gpu.set_blob_data(lp.bottoms[i], to_float(in.x[i]));
  gpu.forward_layer(l);
  UnitOutputs r;
  if (loss) {
    r.y = {double(gpu.output(plan.blobs[lp.tops[0]].name))};
  } else {
    const std::vector<float> y = gpu.blob_data(lp.tops[0]);
    r.y.assign(y.begin(), y.end());
  }
  gpu.zero_grads();
  if (!loss && gpu.relu_mask_left_to_consumer(l)) {
    // Its consumer (norm2) applies the ReLU's mask in the step, so its backward takes dy
    // masked: masked here by the GPU's own output, as that consumer masks by its input.
    std::vector<double> dy = in.dy[0];
    for (std::size_t i = 0; i < dy.size(); ++i)
      if (!(r.y[i] > 0)) dy[i] = 0;
    gpu.set_blob_diff(lp.tops[0], to_float(dy));
  } else if (!loss) {
    gpu.set_blob_diff(lp.tops[0], to_float(in.dy[0]));
  }
  for (std::size_t i = 0; i < lp.bottoms.size(); ++i)
    if (lp.bottom_diff[i] && lp.accumulate[i]) gpu.set_blob_diff(lp.bottoms[i], to_float(in.prior[i]));
  gpu.backward_layer(l);
  for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
    const std::vector<float> d = lp.bottom_diff[i] ? gpu.blob_diff(lp.bottoms[i]) : std::vector<float>();
    r.dx.emplace_back(d.begin(), d.end());
  }
  if (!lp.param_ids.empty()) {
    std::vector<float> g(plan.param_elems);
    gpu.get_grads(g);
    for (int p : lp.param_ids)
      r.dw.emplace_back(g.begin() + plan.params[p].offset,
                        g.begin() + plan.params[p].offset + plan.params[p].count);
  }
  return r;
}

// One comparison of a unit: relative error, its limit, and whether x 1.1 would be caught.
struct Check {
  double err = 0, limit = kLayerLimit;
  bool scaled_caught = true;
  bool present = false;
};

Check check(const std::vector<double>& got, const std::vector<double>& ref, double limit = kLayerLimit) {
  Check c;
  c.present = true;
  c.err = b128::agreement(got, ref).rel;
  c.limit = limit;
  c.scaled_caught = b128::agreement(got, ref, 1.1).rel > limit;
  return c;
}

// A bottom's gradient: this layer's contribution (minus the prior where it accumulates). Rounding
// the sum to bf16 costs up to kBf16Unit of the sum, which the limit allows for.
Check check_dgrad(const LayerPlan& lp, const UnitOutputs& got, const UnitOutputs& ref, const UnitInputs& in,
                  double limit) {
  std::vector<double> g, r;
  double sum2 = 0;
  for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
    if (!lp.bottom_diff[i]) continue;
    for (std::size_t j = 0; j < ref.dx[i].size(); ++j) {
      const double prior = lp.accumulate[i] ? in.prior[i][j] : 0.0;
      g.push_back(got.dx[i][j] - prior);
      r.push_back(ref.dx[i][j] - prior);
      sum2 += ref.dx[i][j] * ref.dx[i][j];
    }
  }
  if (r.empty()) return {};
  double r2 = 0;
  for (double v : r) r2 += v * v;
  const double floor = 2 * kBf16Unit * std::sqrt(sum2 / std::max(r2, 1e-300));
  return check(g, r, std::max(limit, floor));
}

std::string cell(const Check& c) {
  if (!c.present) return "        -";
  char b[32];
  std::snprintf(b, sizeof b, "%9.2e", c.err);
  return b;
}

TEST(GoogLeNetB128, Bf16LayerByLayer) {
  INCEPT_REQUIRE_GPU();
  const auto t_start = std::chrono::steady_clock::now();
  const NetPlan plan = b128::plan();
  const GpuNetOptions opt = b128::options(DType::kBF16);
  GpuNet gpu(plan, opt);
  std::vector<float> w(plan.param_elems);
  fill_params(plan, 11, w.data());
  for (float& v : w) v = b128::round_bf16(v);  // the GPU's bf16 copy is then exactly these
  gpu.set_params(w);
  std::vector<float> x = b128::images(12);
  for (float& v : x) v = b128::round_bf16(v);
  const std::vector<std::int32_t> labels = b128::labels(13);
  gpu.set_input(x);
  CUDA_CHECK(cudaMemcpy(gpu.labels(), labels.data(), labels.size() * 4, cudaMemcpyHostToDevice));
  const int step = 5;
  gpu.set_step_values(b128::step_values(step));  // the dropout layers read the iteration

  testing::ShardedCpuNet cpu(models::googlenet(), plan.options);
  const std::vector<double> weights(w.begin(), w.end());
  cpu.set_params(weights);
  cpu.set_input(x);
  cpu.set_labels(labels);
  cpu.set_dropout_seed(opt.dropout_seed);
  const int layers = int(plan.layers.size());
  auto in_place = [&](int l) {
    const LayerPlan& lp = plan.layers[l];
    return lp.bottoms.size() == 1 && lp.tops.size() == 1 && lp.bottoms[0] == lp.tops[0] &&
           !gpu.relu_folded(l);
  };
  // The inputs of in-place layers (ReLU after an InnerProduct, Dropout), which their forward
  // overwrites: kept per shard as the reference's forward pass reaches them.
  std::vector<std::vector<std::vector<double>>> kept(layers, std::vector<std::vector<double>>(cpu.shards()));
  cpu.forward(step, [&](int k, int l) {
    if (!in_place(l)) return;
    const int b = plan.layers[l].bottoms[0];
    const Nchw& s = cpu.plan().blobs[b].shape;
    const double* p = cpu.shard(k).blob_data(b);
    for (int n = 0; n < s.n; ++n)
      kept[l][k].insert(kept[l][k].end(), p + n * s.nstride(), p + n * s.nstride() + s.image());
  });
  std::printf("  reference forward %.1f s (%d threads)\n", b128::seconds_since(t_start), cpu.shards());

  std::printf("  %-32s %-15s %9s %9s %9s %9s %9s %9s %9s %9s\n", "layer", "type", "fwd", "dgrad", "wgrad",
              "bgrad", "limit", "flips", "dgrad*", "wgrad*");
  std::printf(
      "  (gradients through the GPU's ReLU mask; flips: mask elements that differ from the reference's;\n"
      "   dgrad*, wgrad*: against the reference's own mask, for the record)\n");
  std::int64_t total_flips = 0;
  std::vector<std::vector<double>> dy_above_relu(layers);
  int checked = 0;
  for (int l = layers - 1; l >= 0; --l) {
    const LayerPlan& lp = plan.layers[l];
    if (gpu.relu_folded(l)) {  // its convolution (l - 1) runs it: keep the gradient above it
      dy_above_relu[l - 1] = rounded_bf16(cpu.blob_diff(lp.tops[0]));
      cpu.backward_layer(l);
      continue;
    }
    if (lp.kind() == LayerKind::kConcat) {
      cpu.backward_layer(l);
      continue;
    }
    const bool relu = l + 1 < layers && gpu.relu_folded(l + 1);
    const bool loss = lp.kind() == LayerKind::kSoftmaxWithLoss;
    UnitInputs in;
    for (std::size_t i = 0; i < lp.bottoms.size(); ++i) {
      const int b = lp.bottoms[i];
      if (plan.blobs[b].is_label) {
        in.x.emplace_back();
      } else if (in_place(l)) {
        std::vector<double> all;
        for (const auto& part : kept[l]) all.insert(all.end(), part.begin(), part.end());
        in.x.push_back(rounded_bf16(std::move(all)));
      } else {
        in.x.push_back(rounded_bf16(cpu.blob_data(b)));
      }
      in.prior.push_back(lp.bottom_diff[i] && lp.accumulate[i] ? rounded_bf16(cpu.blob_diff(b))
                                                               : std::vector<double>());
    }
    if (!loss) in.dy.push_back(relu ? dy_above_relu[l] : rounded_bf16(cpu.blob_diff(lp.tops[0])));
    UnitOutputs own =
        reference_unit(plan, l, relu, in, weights, labels, opt.dropout_seed, step, cpu.shards());
    if (gpu.applies_relu_mask(l))  // the LRN that also applies its producer's ReLU mask (norm2)
      for (std::size_t j = 0; j < own.dx[0].size(); ++j)
        if (!(in.x[0][j] > 0)) own.dx[0][j] = 0;
    const UnitOutputs got = gpu_unit(gpu, l, in);
    const Check fwd = check(got.y, own.y);
    // With a ReLU: the reference backward through the GPU's mask (see kFlipBand), and the flips.
    std::int64_t flips = 0, outside = 0;
    UnitOutputs masked;
    if (relu) {
      double z2 = 0;
      for (double v : own.z) z2 += v * v;
      const double band = kFlipBand * std::sqrt(z2 / double(std::max<std::size_t>(own.z.size(), 1)));
      for (std::size_t i = 0; i < own.z.size(); ++i)
        if ((got.y[i] > 0) != (own.z[i] > 0)) {
          ++flips;
          outside += std::abs(own.z[i]) > band;
        }
      masked =
          reference_unit(plan, l, relu, in, weights, labels, opt.dropout_seed, step, cpu.shards(), &got.y);
    }
    const UnitOutputs& ref = relu ? masked : own;
    const Check dgrad = check_dgrad(lp, got, ref, in, kLayerLimit);
    const Check wgrad = got.dw.empty() ? Check{} : check(got.dw[0], ref.dw[0]);
    const Check bgrad = got.dw.size() < 2 ? Check{} : check(got.dw[1], ref.dw[1]);
    // For the record: the same against the reference's own mask (what the flips cost).
    const Check dgrad_own = relu ? check_dgrad(lp, got, own, in, kLayerLimit) : Check{};
    const Check wgrad_own = relu && !got.dw.empty() ? check(got.dw[0], own.dw[0]) : Check{};
    const std::string name = lp.name + (relu ? " +relu" : "");
    std::printf("  %-32s %-15s %s %s %s %s %9.1e %9s %s %s\n", name.c_str(), kind_name(lp.kind()),
                cell(fwd).c_str(), cell(dgrad).c_str(), cell(wgrad).c_str(), cell(bgrad).c_str(),
                std::max(kLayerLimit, dgrad.limit), relu ? std::to_string(flips).c_str() : "-",
                cell(dgrad_own).c_str(), cell(wgrad_own).c_str());
    for (const auto& [what, c] : {std::pair{"forward", fwd},
                                  {"input gradient", dgrad},
                                  {"weight gradient", wgrad},
                                  {"bias gradient", bgrad}}) {
      if (!c.present) continue;
      EXPECT_LE(c.err, c.limit) << name << " " << what;
      EXPECT_TRUE(c.scaled_caught) << name << " " << what << " x 1.1 would pass the limit " << c.limit;
    }
    EXPECT_EQ(outside, 0)
        << name << ": " << outside << " of " << flips
        << " ReLU mask elements differ from the reference's where its pre-ReLU value is not near 0";
    // Flips are rare: a mask that is wrong in bulk is an error whatever the gradients say.
    EXPECT_LE(double(flips), 5e-3 * double(got.y.size())) << name;
    total_flips += flips;
    ++checked;
    cpu.backward_layer(l);
  }
  std::printf("  %d layers checked in %.1f s, %lld ReLU mask elements flipped in all\n", checked,
              b128::seconds_since(t_start), static_cast<long long>(total_flips));
}

}  // namespace
}  // namespace incept

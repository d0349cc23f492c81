// The CPU reference split over threads by images (sharded_cpu_net.h).
#include "testing/sharded_cpu_net.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <thread>

#include "engine/error.h"
#include "kernels/dtype_gpu.h"

// OpenBLAS (libincept links it): one thread per caller, the shards are the parallelism.
extern "C" void openblas_set_num_threads(int num_threads);

namespace incept::testing {

namespace {

double round_bf16(double v) {
  return kernels::bf16_bits_to_f32(kernels::f32_to_bf16_bits(float(v)));
}

// Rounds the elements of a view (n_stride: a concat slice) to bf16.
void round_view(double* p, const Nchw& s) {
  if (!p) return;
  for (int n = 0; n < s.n; ++n)
    for (std::int64_t i = 0; i < s.image(); ++i) p[n * s.nstride() + i] = round_bf16(p[n * s.nstride() + i]);
}

int default_shards(int batch) {
  const int hw = std::max(1, int(std::thread::hardware_concurrency()));
  int s = 1;
  while (2 * s <= hw && batch % (2 * s) == 0) s *= 2;
  return s;
}

}  // namespace

ShardedCpuNet::ShardedCpuNet(const NetSpec& spec, PlanOptions options, int shards) : batch_(options.batch) {
  if (shards <= 0) shards = default_shards(batch_);
  if (batch_ <= 0 || batch_ % shards != 0)
    throw Error(fmt::format("ShardedCpuNet: {} shards do not divide the batch {}", shards, batch_));
  openblas_set_num_threads(1);
  options.batch = batch_ / shards;
  const NetPlan plan = plan_net(spec, options);
  for (int k = 0; k < shards; ++k) {
    nets_.push_back(std::make_unique<CpuNet<double>>(plan));
    nets_.back()->set_dropout_first_sample(std::uint64_t(k) * options.batch);
  }
}

void ShardedCpuNet::parallel(const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(nets_.size());
  std::vector<std::thread> threads;
  for (int k = 0; k < shards(); ++k)
    threads.emplace_back([&, k] {
      try {
        fn(k);
      } catch (...) {
        errors[k] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

void ShardedCpuNet::set_params(std::span<const double> params) {
  for (auto& net : nets_) {
    if (params.size() != net->params().size())
      throw Error(
          fmt::format("ShardedCpuNet::set_params: {} values for {}", params.size(), net->params().size()));
    std::copy(params.begin(), params.end(), net->params().begin());
  }
}

void ShardedCpuNet::set_input(std::span<const float> nchw) {
  const Nchw& in = plan().blobs[plan().data_blob].shape;
  if (std::int64_t(nchw.size()) != in.count() * shards())
    throw Error(
        fmt::format("ShardedCpuNet::set_input: {} values for {}", nchw.size(), in.count() * shards()));
  for (int k = 0; k < shards(); ++k) std::copy_n(nchw.begin() + k * in.count(), in.count(), nets_[k]->data());
}

void ShardedCpuNet::set_labels(std::span<const std::int32_t> labels) {
  const int b = batch_ / shards();
  if (int(labels.size()) != batch_) throw Error("ShardedCpuNet::set_labels: one label per image");
  for (int k = 0; k < shards(); ++k) std::copy_n(labels.begin() + k * b, b, nets_[k]->labels());
}

void ShardedCpuNet::set_dropout_seed(std::uint64_t seed) {
  for (auto& net : nets_) net->set_dropout_seed(seed);
}

void ShardedCpuNet::set_round_bf16(bool on) {
  if (on && (shards() & (shards() - 1)) != 0)
    throw Error(
        fmt::format("ShardedCpuNet: bf16 rounding needs a power-of-two number of shards, not {}", shards()));
  round_bf16_ = on;
}

void ShardedCpuNet::round_tops(CpuNet<double>& net, int l) const {
  for (int t : plan().layers[l].tops) {
    const BlobPlan& b = plan().blobs[t];
    if (!(b.is_output && b.shape.count() == 1)) round_view(net.blob_data(t), b.shape);  // losses stay exact
  }
}

void ShardedCpuNet::round_bottom_diffs(CpuNet<double>& net, int l) const {
  const LayerPlan& lp = plan().layers[l];
  for (std::size_t i = 0; i < lp.bottoms.size(); ++i)
    if (lp.bottom_diff[i]) round_view(net.blob_diff(lp.bottoms[i]), plan().blobs[lp.bottoms[i]].shape);
}

void ShardedCpuNet::forward(std::uint64_t step, const std::function<void(int, int)>& before_layer) {
  parallel([&](int k) {
    CpuNet<double>& net = *nets_[k];
    net.zero_grads();
    for (int l = 0; l < int(net.plan().layers.size()); ++l) {
      if (before_layer) before_layer(k, l);
      net.forward_layer(l, step);
      if (round_bf16_) round_tops(net, l);
    }
  });
}

void ShardedCpuNet::backward() {
  parallel([&](int k) {
    for (int l = int(plan().layers.size()) - 1; l >= 0; --l) {
      nets_[k]->backward_layer(l);
      if (round_bf16_) round_bottom_diffs(*nets_[k], l);
    }
  });
}

void ShardedCpuNet::backward_layer(int l) {
  parallel([&](int k) {
    nets_[k]->backward_layer(l);
    if (round_bf16_) round_bottom_diffs(*nets_[k], l);
  });
}

std::vector<double> ShardedCpuNet::grads() const {
  std::vector<double> g(nets_[0]->grads().size(), 0.0);
  for (const auto& net : nets_) {
    const std::span<double> s = net->grads();
    for (std::size_t i = 0; i < g.size(); ++i) g[i] += s[i];
  }
  for (double& v : g) v = round_bf16_ ? round_bf16(v / shards()) : v / shards();
  return g;
}

std::vector<std::pair<std::string, double>> ShardedCpuNet::scalar_outputs() const {
  std::vector<std::pair<std::string, double>> out = nets_[0]->scalar_outputs();
  for (std::size_t k = 1; k < nets_.size(); ++k) {
    const auto o = nets_[k]->scalar_outputs();
    for (std::size_t i = 0; i < out.size(); ++i) out[i].second += o[i].second;
  }
  for (auto& [name, v] : out) v /= shards();
  return out;
}

std::vector<double> ShardedCpuNet::gather(int blob, bool diff) {
  const Nchw& s = plan().blobs[blob].shape;  // one shard's view (n_stride: a concat slice)
  std::vector<double> out(std::size_t(s.count()) * shards());
  double* o = out.data();
  for (auto& net : nets_) {
    const double* p = diff ? net->blob_diff(blob) : net->blob_data(blob);
    if (!p) throw Error(fmt::format("ShardedCpuNet: blob {} has no gradient", plan().blobs[blob].name));
    for (int n = 0; n < s.n; ++n, o += s.image()) {
      std::copy_n(p + n * s.nstride(), s.image(), o);
      if (diff)  // a shard's loss is its mean: its gradients are shards() x the whole batch's
        for (std::int64_t i = 0; i < s.image(); ++i) o[i] /= shards();
    }
  }
  return out;
}

std::vector<double> ShardedCpuNet::blob_data(int blob) {
  return gather(blob, false);
}

std::vector<double> ShardedCpuNet::blob_diff(int blob) {
  return gather(blob, true);
}

}  // namespace incept::testing

// A job's snapshots (snapshot.h).
#include "engine/snapshot.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "data/caffe.pb.h"
#include "engine/atomic_file.h"
#include "engine/check.h"

namespace fs = std::filesystem;

namespace incept {

std::string snapshot_name(std::int64_t iter, const char* ext) {
  return fmt::format("snapshot_iter_{}.{}", iter, ext);
}

fs::path write_snapshot(const fs::path& job_dir, const NetSpec& spec, const NetPlan& plan,
                        std::span<const float> params, std::span<const float> momentum,
                        const SolverStateInfo& info, BlobFormat format) {
  if (std::int64_t(params.size()) != plan.param_elems || std::int64_t(momentum.size()) != plan.param_elems)
    throw Error("write_snapshot: parameter arrays do not match the plan");
  const fs::path model = job_dir / snapshot_name(info.iter, "caffemodel");
  write_file_atomic(model, caffemodel_bytes(spec, plan, params, format));

  caffe::SolverState st;
  st.set_iter(int(std::min<std::int64_t>(info.iter, INT32_MAX)));
  st.set_learned_net(model.filename().string());
  st.set_current_step(0);
  for (const ParamPlan& p : plan.params) {  // one history blob per parameter blob, as Caffe
    caffe::BlobProto* b = st.add_history();
    for (int d : p.shape) b->mutable_shape()->add_dim(d);
    b->mutable_data()->Add(momentum.begin() + p.offset, momentum.begin() + p.offset + p.count);
  }
  st.set_incept_seed(info.seed);
  st.set_incept_iter(info.iter);
  st.set_incept_train_records(info.train_records);
  st.set_incept_val_records(info.val_records);
  st.set_incept_batch_size(info.batch_size);
  st.set_incept_max_iter(info.max_iter);
  st.set_incept_precision(info.precision);
  st.set_incept_world_size(info.world_size);
  st.set_incept_corrupt_skipped(info.corrupt_skipped);
  st.set_incept_wall_seconds(info.wall_s);
  std::string bytes;
  if (!st.SerializeToString(&bytes)) throw Error("write_snapshot: cannot serialize the solver state");
  const fs::path state = job_dir / snapshot_name(info.iter, "solverstate");
  write_file_atomic(state, bytes);

  // DIGITS keeps only the newest solverstate (each is as large as the model).
  for (const SnapshotFiles& s : list_snapshots(job_dir))
    if (s.iter != info.iter && !s.solverstate.empty()) {
      std::error_code ec;
      fs::remove(s.solverstate, ec);
    }
  return model;
}

std::vector<SnapshotFiles> list_snapshots(const fs::path& job_dir) {
  static const std::regex re(R"(snapshot_iter_([0-9]+)\.(caffemodel|solverstate))");
  std::map<std::int64_t, SnapshotFiles> by_iter;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(job_dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || !std::regex_match(name, m, re)) continue;
    const std::int64_t it = std::stoll(m[1].str());
    SnapshotFiles& s = by_iter[it];
    s.iter = it;
    (m[2] == "caffemodel" ? s.caffemodel : s.solverstate) = e.path();
  }
  std::vector<SnapshotFiles> out;
  for (auto& [it, s] : by_iter)
    if (!s.caffemodel.empty()) out.push_back(s);
  return out;
}

std::optional<SnapshotFiles> latest_resumable(const fs::path& job_dir) {
  const auto all = list_snapshots(job_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (!it->solverstate.empty()) return *it;
  return std::nullopt;
}

SolverStateInfo read_solverstate(const fs::path& path, const NetPlan& plan, std::span<float> momentum) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot open {}", path.string()));
  std::stringstream ss;
  ss << f.rdbuf();
  caffe::SolverState st;
  if (!st.ParseFromString(ss.str()))
    throw Error(fmt::format("{} is not a Caffe solver state (truncated or corrupt)", path.string()));
  if (std::int64_t(momentum.size()) != plan.param_elems) throw Error("read_solverstate: wrong momentum size");
  if (st.history_size() != int(plan.params.size()))
    throw Error(fmt::format("{} holds {} history blobs, the net has {} parameter blobs", path.string(),
                            st.history_size(), plan.params.size()));
  std::fill(momentum.begin(), momentum.end(), 0.f);
  for (std::size_t i = 0; i < plan.params.size(); ++i) {
    const ParamPlan& p = plan.params[i];
    const caffe::BlobProto& b = st.history(int(i));
    if (b.data_size() != p.count)
      throw Error(fmt::format("{}: history of {} #{} holds {} values, expected {}", path.string(), p.layer,
                              p.index, b.data_size(), p.count));
    std::copy(b.data().begin(), b.data().end(), momentum.begin() + p.offset);
  }
  SolverStateInfo info;
  info.iter = st.has_incept_iter() ? st.incept_iter() : st.iter();
  info.seed = st.incept_seed();
  info.train_records = st.incept_train_records();
  info.val_records = st.incept_val_records();
  info.batch_size = st.incept_batch_size();
  info.max_iter = st.incept_max_iter();
  info.precision = st.incept_precision();
  info.world_size = st.has_incept_world_size() ? st.incept_world_size() : 1;
  info.corrupt_skipped = st.incept_corrupt_skipped();
  info.wall_s = st.incept_wall_seconds();
  return info;
}

}  // namespace incept

// ProcessGroup: the shared liveness bookkeeping, the single-process group and the choice of
// implementation from the rendezvous (process_group.h).
#include "engine/process_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/check.h"

namespace incept {

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::on_peer_lost(std::function<void(const std::string&)> fn) {
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lost_) {
      callbacks_.push_back(std::move(fn));
      return;
    }
    why = why_;
  }
  fn(why);
}

bool ProcessGroup::report_lost(const std::string& why) {
  std::vector<std::function<void(const std::string&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (lost_) return false;
    why_ = why;
    lost_ = true;
    callbacks.swap(callbacks_);
  }
  for (auto& fn : callbacks) fn(why);
  return true;
}

std::string ProcessGroup::lost_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return why_;
}

void ProcessGroup::throw_lost() const {
  throw Error(fmt::format("rank {}: {}", rank(), lost_reason()));
}

void ProcessGroup::check() const {
  if (lost_) throw_lost();
}

double heartbeat_interval(double peer_timeout_s) {
  return std::min(1.0, peer_timeout_s / 5);
}

std::string encode_strings(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    const std::uint64_t n = p.size();
    out.append(reinterpret_cast<const char*>(&n), sizeof(n));
    out += p;
  }
  return out;
}

std::vector<std::string> decode_strings(const std::string& data, std::size_t expected_count) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::uint64_t n = 0;
    if (data.size() - pos < sizeof(n)) break;
    std::memcpy(&n, data.data() + pos, sizeof(n));
    pos += sizeof(n);
    if (n > data.size() - pos) break;
    parts.push_back(data.substr(pos, n));
    pos += n;
  }
  if (pos != data.size() || parts.size() != expected_count)
    throw Error(fmt::format("process group: a corrupt all_gather message ({} bytes, {} of {} parts)",
                            data.size(), parts.size(), expected_count));
  return parts;
}

namespace {

class SingleProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string kind() const override { return "single"; }
  std::string broadcast(const std::string& from_rank0) override { return from_rank0; }
  std::vector<std::string> all_gather(const std::string& mine) override { return {mine}; }
  void barrier() override {}
  void abort(const std::string&) override {}
  void finish() override {}
};

}  // namespace

std::unique_ptr<ProcessGroup> make_single_process_group() {
  return std::make_unique<SingleProcessGroup>();
}

std::unique_ptr<ProcessGroup> ProcessGroup::create(const DistEnv& env, const DistFlags& flags) {
  const Rendezvous r = parse_rendezvous(env.rendezvous);
  // "mpi" with one process still initializes MPI: mpirun -np 1 expects MPI_Init/MPI_Finalize.
  if (r.kind == Rendezvous::Kind::kMpi) return make_mpi_process_group(env, flags);
  if (env.world == 1) return make_single_process_group();
  switch (r.kind) {
    case Rendezvous::Kind::kFile:
      return make_file_process_group(env, flags, r.path);
    case Rendezvous::Kind::kTcp:
      return make_tcp_process_group(env, flags, r.host, r.port);
    default:
      throw Error(fmt::format("rank {}: a job of {} processes has no rendezvous (--rendezvous)", env.rank,
                              env.world));
  }
}

#ifndef INCEPT_WITH_MPI
std::unique_ptr<ProcessGroup> make_mpi_process_group(const DistEnv&, const DistFlags&) {
  throw Error("--rendezvous mpi: this build has no MPI (install libopenmpi-dev and rebuild)");
}
#endif

}  // namespace incept

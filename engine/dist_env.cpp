// Rank, world, node placement and rendezvous of this process (dist_env.h).
#include "engine/dist_env.h"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <optional>

#include "engine/check.h"
#include "engine/device.h"

extern char** environ;

namespace incept {
namespace {

// What a launcher's environment says about this process.
struct LauncherView {
  std::string name;
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string source;  // the variables it came from, for error messages
};

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

const std::string* find(const EnvMap& env, const char* name) {
  const auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

// The integer value of an environment variable; nullopt when unset; Error when not a number.
std::optional<int> env_int(const EnvMap& env, const char* name) {
  const std::string* v = find(env, name);
  if (!v) return std::nullopt;
  const auto n = parse_int(*v);
  if (!n || *n < 0)
    throw Error(fmt::format("launcher environment: {}='{}' is not a non-negative whole number", name, *v));
  return n;
}

int require_int(const EnvMap& env, const char* name, const char* launcher) {
  const auto v = env_int(env, name);
  if (!v) throw Error(fmt::format("{} environment is incomplete: {} is not set", launcher, name));
  return *v;
}

// Slurm's tasks-per-node list, e.g. "2(x3),1": nodes 0-2 run 2 tasks, node 3 runs 1.
std::vector<int> expand_slurm_tasks_per_node(const std::string& spec) {
  std::vector<int> out;
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string item = spec.substr(pos, comma - pos);
    const std::size_t paren = item.find("(x");
    const auto count = parse_int(item.substr(0, paren));
    std::optional<int> repeat = 1;
    if (paren != std::string::npos) {
      if (item.back() != ')')
        repeat.reset();
      else
        repeat = parse_int(item.substr(paren + 2, item.size() - paren - 3));
    }
    if (!count || !repeat || *count < 1 || *repeat < 1)
      throw Error(fmt::format("Slurm tasks per node '{}' is not in Slurm's form (e.g. 2(x3),1)", spec));
    out.insert(out.end(), static_cast<std::size_t>(*repeat), *count);
    pos = comma + 1;
  }
  return out;
}

std::optional<LauncherView> from_openmpi(const EnvMap& env) {
  if (!find(env, "OMPI_COMM_WORLD_RANK") && !find(env, "OMPI_COMM_WORLD_SIZE")) return std::nullopt;
  LauncherView v;
  v.name = "openmpi";
  v.rank = require_int(env, "OMPI_COMM_WORLD_RANK", "Open MPI");
  v.world = require_int(env, "OMPI_COMM_WORLD_SIZE", "Open MPI");
  v.local_rank = env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK").value_or(0);
  v.local_world = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE").value_or(0);
  v.source = fmt::format("OMPI_COMM_WORLD_RANK={} OMPI_COMM_WORLD_SIZE={}", v.rank, v.world);
  return v;
}

// MPICH's Hydra and Intel MPI (PMI-1 names; Hydra adds MPI_LOCALRANKID / MPI_LOCALNRANKS).
std::optional<LauncherView> from_mpich(const EnvMap& env) {
  if (!find(env, "PMI_RANK") && !find(env, "PMI_SIZE")) return std::nullopt;
  LauncherView v;
  v.name = "mpich";
  v.rank = require_int(env, "PMI_RANK", "MPICH/PMI");
  v.world = require_int(env, "PMI_SIZE", "MPICH/PMI");
  v.local_rank = env_int(env, "MPI_LOCALRANKID").value_or(0);
  v.local_world = env_int(env, "MPI_LOCALNRANKS").value_or(0);
  v.source = fmt::format("PMI_RANK={} PMI_SIZE={}", v.rank, v.world);
  return v;
}

// Only a job step (srun) counts: a batch script also sees SLURM_PROCID=0 and SLURM_NTASKS, but
// it is one process, so it runs alone unless it starts its tasks with srun.
std::optional<LauncherView> from_slurm(const EnvMap& env) {
  if (!find(env, "SLURM_PROCID")) return std::nullopt;
  if (!find(env, "SLURM_STEP_ID") && !find(env, "SLURM_STEPID")) return std::nullopt;
  LauncherView v;
  v.name = "slurm";
  v.rank = require_int(env, "SLURM_PROCID", "Slurm");
  const char* world_var = find(env, "SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
  v.world = require_int(env, world_var, "Slurm");
  v.local_rank = env_int(env, "SLURM_LOCALID").value_or(0);
  v.local_world = 0;
  const std::string* per_node = find(env, "SLURM_STEP_TASKS_PER_NODE");
  if (!per_node) per_node = find(env, "SLURM_TASKS_PER_NODE");
  const auto node = env_int(env, "SLURM_NODEID");
  if (per_node && node) {
    const std::vector<int> tasks = expand_slurm_tasks_per_node(*per_node);
    if (*node < static_cast<int>(tasks.size())) v.local_world = tasks[static_cast<std::size_t>(*node)];
  }
  v.source = fmt::format("SLURM_PROCID={} {}={}", v.rank, world_var, v.world);
  return v;
}

// Open MPI and MPICH first: under mpirun inside a Slurm allocation the SLURM_* values describe
// the allocation, not the processes mpirun started.
std::optional<LauncherView> detect_launcher(const EnvMap& env) {
  if (auto v = from_openmpi(env)) return v;
  if (auto v = from_mpich(env)) return v;
  return from_slurm(env);
}

void validate(const DistEnv& d, const std::string& source) {
  if (d.world < 1) throw Error(fmt::format("world size {} ({}) must be at least 1", d.world, source));
  if (d.rank < 0 || d.rank >= d.world)
    throw Error(fmt::format("rank {} is outside the world of {} processes ({}): ranks are 0..{}", d.rank,
                            d.world, source, d.world - 1));
  if (d.local_world > 0 && d.local_rank >= d.local_world)
    throw Error(fmt::format("local rank {} is outside the {} processes on this node ({})", d.local_rank,
                            d.local_world, source));
  if (d.local_world > d.world)
    throw Error(
        fmt::format("{} processes on this node but only {} in the job ({})", d.local_world, d.world, source));
}

std::string missing_rendezvous_message(const DistEnv& d) {
  std::string msg = fmt::format(
      "a job of {} processes needs a rendezvous so that they can meet: --rendezvous tcp:HOST:PORT (HOST "
      "is the node of rank 0, PORT a free port) or --rendezvous file:PATH (PATH on a filesystem every "
      "node shares)",
      d.world);
  if (d.launcher == "slurm")
    msg +=
        "; under srun e.g. --rendezvous tcp:$(scontrol show hostnames $SLURM_STEP_NODELIST | head -1):29500";
  if (d.launcher == "openmpi" || d.launcher == "mpich")
    msg += "; this build has no MPI (install libopenmpi-dev and rebuild to meet through mpirun's MPI)";
  return msg;
}

}  // namespace

Rendezvous parse_rendezvous(const std::string& spec) {
  const auto bad = [&](const std::string& why) {
    return Error(fmt::format("--rendezvous '{}': {}; use file:PATH, tcp:HOST:PORT or mpi", spec, why));
  };
  Rendezvous r;
  if (spec.empty()) return r;
  if (spec == "mpi") {
    r.kind = Rendezvous::Kind::kMpi;
  } else if (spec.starts_with("file:")) {
    r.kind = Rendezvous::Kind::kFile;
    r.path = spec.substr(5);
    if (r.path.empty()) throw bad("the file path is empty");
    if (r.path.back() == '/') throw bad("the path names a folder; give a file name inside it");
  } else if (spec.starts_with("tcp:")) {
    r.kind = Rendezvous::Kind::kTcp;
    const std::string rest = spec.substr(4);
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) throw bad("expected tcp:HOST:PORT");
    r.host = rest.substr(0, colon);
    if (r.host.size() > 2 && r.host.front() == '[' && r.host.back() == ']')
      r.host = r.host.substr(1, r.host.size() - 2);  // [::1]:port
    const auto port = parse_int(rest.substr(colon + 1));
    if (!port || *port < 1 || *port > 65535) throw bad("the port must be a number from 1 to 65535");
    r.port = *port;
  } else {
    throw bad("unknown kind");
  }
  return r;
}

EnvMap process_environment() {
  EnvMap env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv(*e);
    const std::size_t eq = kv.find('=');
    if (eq != std::string_view::npos)
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

bool mpi_built() {
#ifdef INCEPT_WITH_MPI
  return true;
#else
  return false;
#endif
}

DistEnv detect_dist_env(const DistFlags& f, const EnvMap& env) {
  if (!(f.timeout_s > 0))
    throw Error(fmt::format("--dist-timeout {} must be positive (seconds)", f.timeout_s));
  if (!(f.peer_timeout_s > 0))
    throw Error(fmt::format("--dist-peer-timeout {} must be positive (seconds)", f.peer_timeout_s));
  if (f.rank < -1) throw Error(fmt::format("--rank {} is negative", f.rank));
  if (f.world == 0 || f.world < -1) throw Error(fmt::format("--world-size {} must be at least 1", f.world));
  if (f.local_rank < -1) throw Error(fmt::format("--local-rank {} is negative", f.local_rank));

  const std::optional<LauncherView> launcher = detect_launcher(env);
  DistEnv d;
  std::string source = "no launcher, no flags";
  bool local_from_launcher = false;
  if (f.rank != -1 || f.world != -1) {
    if (f.rank == -1 || f.world == -1)
      throw Error(f.rank == -1 ? fmt::format("--world-size {} needs --rank as well", f.world)
                               : fmt::format("--rank {} needs --world-size as well", f.rank));
    d.rank = f.rank;
    d.world = f.world;
    d.launcher = "flags";
    d.local_world = 1;
    source = fmt::format("--rank {} --world-size {}", f.rank, f.world);
    // The launcher's node placement still holds when it describes the same process.
    if (launcher && launcher->rank == f.rank && launcher->world == f.world) {
      d.local_rank = launcher->local_rank;
      d.local_world = launcher->local_world;
      local_from_launcher = true;
    }
  } else if (launcher) {
    d.rank = launcher->rank;
    d.world = launcher->world;
    d.local_rank = launcher->local_rank;
    d.local_world = launcher->local_world;
    d.launcher = launcher->name;
    source = launcher->source;
    local_from_launcher = true;
  }
  if (f.local_rank != -1) {
    d.local_rank = f.local_rank;
    if (!local_from_launcher) d.local_world = 0;
    source += fmt::format(" --local-rank {}", f.local_rank);
  }
  validate(d, source);

  if (!f.rendezvous.empty()) {
    const Rendezvous r = parse_rendezvous(f.rendezvous);
    if (r.kind == Rendezvous::Kind::kMpi && !mpi_built())
      throw Error(
          "--rendezvous mpi: this build has no MPI (install libopenmpi-dev and rebuild), or use "
          "--rendezvous file:PATH or tcp:HOST:PORT");
    d.rendezvous = f.rendezvous;
  } else if (d.world > 1) {
    if ((d.launcher == "openmpi" || d.launcher == "mpich") && mpi_built())
      d.rendezvous = "mpi";
    else
      throw Error(missing_rendezvous_message(d));
  }
  return d;
}

DistEnv detect_dist_env(const DistFlags& flags) {
  return detect_dist_env(flags, process_environment());
}

std::string describe(const DistEnv& d) {
  const std::string local = d.local_world > 0 ? fmt::format("{}/{}", d.local_rank, d.local_world)
                                              : fmt::format("{}/?", d.local_rank);
  return fmt::format("rank {}/{} (local {}, {}, rendezvous {})", d.rank, d.world, local, d.launcher,
                     d.rendezvous.empty() ? "none" : d.rendezvous);
}

std::vector<int> local_gpus(const DistEnv& env, const std::string& gpus_flag, int device_count) {
  if (gpus_flag == "none" || gpus_flag == "cpu") {
    if (env.world > 1)
      throw Error(
          fmt::format("--gpus {}: a job of {} processes trains on GPUs (NCCL); give GPUs or run one process",
                      gpus_flag, env.world));
    return {};
  }
  if (env.local_world == 1) {
    if (gpus_flag.empty()) return parse_gpu_list("0", device_count);
    return parse_gpu_list(gpus_flag, device_count);
  }
  // Several processes on this node: one GPU each.
  const std::string spec = gpus_flag.empty() ? "all" : gpus_flag;
  if (spec == "all" && device_count == 1) return {0};  // the launcher gave each task its own GPU
  const std::vector<int> listed = parse_gpu_list(spec, device_count);
  if (env.local_rank >= static_cast<int>(listed.size())) {
    const std::string procs =
        env.local_world > 0 ? fmt::format("{} processes", env.local_world) : std::string("several processes");
    throw Error(fmt::format(
        "--gpus {}: {} share this node, one GPU each, but the list has {} GPU{} for local rank {}; list "
        "one GPU per process on the node or start fewer processes per node",
        spec, procs, listed.size(), listed.size() == 1 ? "" : "s", env.local_rank));
  }
  return {listed[static_cast<std::size_t>(env.local_rank)]};
}

std::vector<int> local_gpus(const DistEnv& env, const std::string& gpus_flag) {
  return local_gpus(env, gpus_flag, gpu_count());
}

}  // namespace incept

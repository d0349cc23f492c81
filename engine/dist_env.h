// Who this process is in a (possibly multi-process) training job: its rank, the world size,
// its place on the node, how the processes meet (the rendezvous) and which GPUs it drives.
// The answer comes from explicit flags (--rank, --world-size, --local-rank, --rendezvous),
// which win, else from the launcher's environment: Open MPI's mpirun (OMPI_COMM_WORLD_*),
// MPICH/Hydra or Intel MPI (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID), or a Slurm job step started
// by srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE).
// Nothing here talks to other processes or to a GPU, so all of it is testable anywhere.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace incept {

// The command-line side. -1 / "" mean "not given".
struct DistFlags {
  int rank = -1, world = -1, local_rank = -1;
  std::string rendezvous;  // "" | "file:PATH" | "tcp:HOST:PORT" | "mpi"
  // Bound on the rendezvous (every rank has joined) and on each ProcessGroup collective.
  double timeout_s = 300;
  // A peer that shows no sign of life for this long is lost (heartbeats every
  // min(1 s, peer_timeout_s / 5)). A peer whose process dies is seen at once over TCP (its
  // socket closes) and within this bound with a file rendezvous.
  double peer_timeout_s = 15;
  // A training step whose gradient all-reduce has not finished this long after it was enqueued
  // (a peer that is alive but stuck) aborts NCCL on every rank and ends the job. It covers what
  // one rank may do while the others wait: rank 0 writing a snapshot and the report.
  double step_timeout_s = 300;
};

struct DistEnv {
  int rank = 0, world = 1;
  int local_rank = 0;
  // Processes of this job on this node; 0 when unknown (--local-rank given by flag without a
  // launcher): then, as with more than one, every process drives one GPU.
  int local_world = 1;
  std::string launcher = "none";  // "none", "openmpi", "mpich", "slurm", "flags"
  std::string rendezvous;         // resolved: "" (world 1), "file:PATH", "tcp:HOST:PORT" or "mpi"
};

// A parsed rendezvous address.
struct Rendezvous {
  enum class Kind { kNone, kFile, kTcp, kMpi };
  Kind kind = Kind::kNone;
  std::string path;  // kFile
  std::string host;  // kTcp
  int port = 0;      // kTcp
};
// Throws Error naming the accepted forms when `spec` is none of them.
Rendezvous parse_rendezvous(const std::string& spec);

using EnvMap = std::map<std::string, std::string>;
EnvMap process_environment();

// True when this build has the MPI process group (Open MPI found at configure time).
bool mpi_built();

// Resolves rank, world, local rank/world, launcher and rendezvous. Throws Error with a message
// naming the values and where they came from when they are inconsistent (rank >= world, a
// half-given --rank/--world-size, a non-numeric launcher variable, a job of several processes
// with no way to meet, "mpi" in a build without MPI, ...). An explicit --rank/--world-size
// replaces the launcher's values; a --rendezvous is always taken as given. Without a
// --rendezvous, processes started by mpirun/mpiexec meet through MPI (in an MPI build).
DistEnv detect_dist_env(const DistFlags& flags, const EnvMap& env);
DistEnv detect_dist_env(const DistFlags& flags);  // the process environment

// "rank 1/4 (local 1/2, openmpi, rendezvous mpi)" for the start-up log.
std::string describe(const DistEnv& env);

// The GPUs this process drives, from --gpus ("" | "all" | "none" | "0,1,..."):
// - one process on the node (local_world 1): every listed GPU ("" means GPU 0);
// - several processes per node (or local_world unknown): one GPU, the local_rank-th entry of
//   the list ("" and "all" mean every visible GPU); when the launcher left each process a
//   single visible GPU (CUDA_VISIBLE_DEVICES per task), that GPU.
// Throws Error when the list is too short for the node's processes, an index does not exist,
// or a job of several processes is asked to run without GPUs.
std::vector<int> local_gpus(const DistEnv& env, const std::string& gpus_flag, int device_count);
std::vector<int> local_gpus(const DistEnv& env, const std::string& gpus_flag);  // gpu_count()

}  // namespace incept

// The job's processes talk to each other through a ProcessGroup only for what NCCL cannot do
// itself: exchanging the NCCL unique id (128 bytes) and other small metadata, barriers, and
// knowing that every peer is still alive. The gradients go through NCCL, never through here.
//
// Implementations (chosen by the rendezvous of DistEnv):
//   world 1        single process, every call returns at once;
//   file:PATH      a file on a filesystem all nodes share: rank 0 writes PATH (a job token)
//                  and a folder PATH.<token>/ holding one file per rank and collective, and
//                  per-rank heartbeat files rewritten every heartbeat interval;
//   tcp:HOST:PORT  rank 0 listens on HOST:PORT, the others connect (star): collectives go
//                  through rank 0, heartbeats both ways, a closed socket is a dead peer;
//   mpi            MPI_COMM_WORLD (builds with Open MPI only); a dead process ends the whole
//                  job through mpirun, which is MPI's own liveness.
//
// Liveness bound (peer_timeout_s is --dist-peer-timeout, 15 s by default; heartbeats every
// min(1 s, peer_timeout_s / 5)):
//   tcp   a peer process that dies is lost at once (the kernel closes its socket); a silent
//         one (hung node, stopped process, cut network) after peer_timeout_s + one heartbeat;
//   file  a dead or silent peer after peer_timeout_s + one heartbeat;
//   mpi   mpirun ends the whole job when a process dies;
//   every collective also fails after timeout_s (--dist-timeout, 300 s by default).
// A peer that reports its own failure (abort(), or leaving without finish()) is lost at once.
// Then the on_peer_lost callbacks run once (on the monitoring thread; the trainer aborts its
// NCCL communicators there), every pending and later collective throws, and check() throws:
// incept::Error("rank 0: lost rank 2: ..."). With TCP, rank 0 forwards every loss to the
// others; with a file, every rank watches every other. A process that is alive but stuck
// (e.g. in a GPU kernel) keeps its heartbeat: NcclGroup's per-collective timeout covers that.
//
// Collectives are called by one thread at a time, in the same order on every rank.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/dist_env.h"

namespace incept {

class ProcessGroup {
 public:
  // Meets the other processes (blocks until all have joined, at most flags.timeout_s) and starts
  // the liveness monitor. Throws Error naming the missing ranks on timeout.
  static std::unique_ptr<ProcessGroup> create(const DistEnv& env, const DistFlags& flags);
  virtual ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual std::string kind() const = 0;  // "single", "file", "tcp", "mpi"

  // Rank 0's `from_rank0` on every rank (the others' argument is ignored).
  virtual std::string broadcast(const std::string& from_rank0) = 0;
  // Every rank's `mine`, indexed by rank.
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  virtual void barrier() = 0;
  // Tells the peers that this rank fails (they lose it with `why`); idempotent, never throws.
  virtual void abort(const std::string& why) = 0;
  // A last barrier, after which leaving is not a loss: call it once at the clean end of a job.
  virtual void finish() = 0;

  // `fn(why)` runs once when a peer is lost (at once if one already is). It runs on the
  // monitoring thread and must not call this group's collectives.
  void on_peer_lost(std::function<void(const std::string& why)> fn);
  // Throws Error("rank R: lost rank N: ...") once a peer is lost; cheap, thread-safe.
  void check() const;
  bool peer_lost() const { return lost_.load(); }
  std::string lost_reason() const;

 protected:
  ProcessGroup() = default;
  // Records the first loss (later ones are ignored) and runs the callbacks. Thread-safe.
  // Returns false when a loss was already recorded.
  bool report_lost(const std::string& why);
  [[noreturn]] void throw_lost() const;

 private:
  std::atomic<bool> lost_{false};
  mutable std::mutex mu_;
  std::string why_;
  std::vector<std::function<void(const std::string&)>> callbacks_;
};

// Implementations (process_group*.cpp); create() picks one.
std::unique_ptr<ProcessGroup> make_single_process_group();
std::unique_ptr<ProcessGroup> make_file_process_group(const DistEnv& env, const DistFlags& flags,
                                                      const std::string& path);
std::unique_ptr<ProcessGroup> make_tcp_process_group(const DistEnv& env, const DistFlags& flags,
                                                     const std::string& host, int port);
std::unique_ptr<ProcessGroup> make_mpi_process_group(const DistEnv& env, const DistFlags& flags);

// Heartbeat period for a peer timeout: min(1 s, peer_timeout_s / 5).
double heartbeat_interval(double peer_timeout_s);

// Length-prefixed concatenation of strings (all_gather payloads); decode throws on bad data.
std::string encode_strings(const std::vector<std::string>& parts);
std::vector<std::string> decode_strings(const std::string& data, std::size_t expected_count);

}  // namespace incept

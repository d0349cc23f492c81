// NCCL communicators for data-parallel training, one per local GPU, over all GPUs of all
// processes of the job, and the watchdog that keeps a lost or hung peer from hanging a rank.
//
// Setup: the processes exchange their GPU counts and rank 0's ncclUniqueId through the
// ProcessGroup; NCCL ranks follow process rank, then local GPU order. Communicators are created
// non-blocking (ncclConfig_t::blocking = 0) and polled against a timeout, so a peer that never
// arrives ends setup with an error instead of a hang.
//
// Failure handling: a watchdog thread polls every communicator's asynchronous error, the
// ProcessGroup's liveness, and the completion events given to watch(). On an NCCL error, a lost
// peer or a watched event past its deadline it aborts every communicator (ncclCommAbort, which
// also ends NCCL kernels spinning on a dead peer, so a host blocked in cudaStreamSynchronize
// returns), tells the peers through the ProcessGroup, and records the error; check() and wait()
// then throw incept::Error("rank N: NCCL ..."). After that the communicators are gone: the
// trainer must not launch more NCCL work (check() before every step launch). An abort finishes
// (in the background) only once the CUDA graphs holding NCCL work are destroyed: destroy the
// nets before this group, whose destructor waits (bounded) for the aborts.
//
// Because the communicators are non-blocking, NCCL calls may return ncclInProgress; settle()
// waits (bounded) until they are enqueued. NVLink multicast (NVLS) stays off unless the user
// asks for it: nccl_default_environment() sets NCCL_NVLS_ENABLE=0 when it is unset.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/owners.h"
#include "engine/process_group.h"

namespace incept {

// NCCL_NVLS_ENABLE=0 unless already set. Call early in main (setenv is not thread-safe); the
// NcclGroup constructor calls it too.
void nccl_default_environment();

class NcclGroup {
 public:
  // Collective over `pg`: every process passes the GPUs it drives (may differ in count between
  // processes). Blocks until every communicator is ready, at most timeout_s; throws Error (after
  // aborting what was created and telling the peers) on failure, timeout or a lost peer.
  NcclGroup(ProcessGroup& pg, const std::vector<int>& local_gpus, double timeout_s);
  ~NcclGroup();  // finalize and destroy (bounded), or abort when that fails or after a failure
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int size() const { return static_cast<int>(devices_.size()); }  // local communicators
  ncclComm_t comm(int i) const { return comms_[static_cast<std::size_t>(i)].get(); }
  int device(int i) const { return devices_[static_cast<std::size_t>(i)]; }
  int nccl_rank(int i) const { return first_rank_ + i; }
  int nccl_world() const { return nccl_world_; }

  // Waits until the NCCL calls just issued (e.g. after ncclGroupEnd) leave ncclInProgress.
  void settle(double timeout_s, std::string_view what);
  // Blocks until `done` has completed, polling it; throws on a failure or after timeout_s.
  void wait(cudaEvent_t done, double timeout_s, std::string_view what);
  // Returns at once; the watchdog fails the group when `done` has not completed after
  // timeout_s. The event must stay alive (and not be re-recorded) until it completes.
  void watch(cudaEvent_t done, double timeout_s, std::string what);
  // Throws the recorded error once the group has failed; cheap, thread-safe.
  void check() const;
  bool failed() const { return failed_.load(); }
  // Aborts every communicator with `why` as the error (idempotent, thread-safe, never throws).
  void abort(const std::string& why);

 private:
  struct PeerLost {  // shared with the ProcessGroup callback, which may outlive this group
    std::atomic<bool> lost{false};
    std::mutex mu;
    std::string why;
  };
  struct Aborting {  // shared with the threads running ncclCommAbort, which may outlive this group
    std::atomic<int> pending{0};
  };
  struct Watched {
    cudaEvent_t event;
    std::chrono::steady_clock::time_point deadline;
    double timeout_s;
    std::string what;
  };

  void create(double timeout_s);
  [[noreturn]] void fail(const std::string& why, bool tell_peers);
  std::string async_failure();  // "" or the first communicator's asynchronous error
  void watchdog();
  void wait_for_aborts(double timeout_s);  // bounded wait for the abort threads

  ProcessGroup& pg_;
  const int pg_rank_;
  std::vector<int> devices_;
  std::vector<NcclComm> comms_;  // guarded by comms_mu_ once the watchdog runs
  int first_rank_ = 0, nccl_world_ = 0;
  std::shared_ptr<PeerLost> peer_lost_ = std::make_shared<PeerLost>();
  std::shared_ptr<Aborting> aborting_ = std::make_shared<Aborting>();

  mutable std::mutex comms_mu_;  // abort vs. polling the communicators
  std::atomic<bool> failed_{false};
  std::string error_;  // guarded by comms_mu_

  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  std::deque<Watched> watched_;
  bool stop_ = false;
  std::thread watchdog_;
};

}  // namespace incept

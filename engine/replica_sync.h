// Host-side sums over every replica of a data-parallel job: the few numbers the trainer
// reduces outside NCCL (training outputs at a display, validation sums, corrupt-record counts,
// the stop request). The threads of this process (one per local GPU) meet at a barrier; the
// last to arrive adds the process's share to the other processes' through the ProcessGroup
// (all_gather) and every replica gets the same total, so all replicas take the same decisions
// (stop, NaN) at the same iteration.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "engine/process_group.h"

namespace incept {

class ReplicaSync {
 public:
  // `pg`: the job's processes (null or world 1: this process only).
  ReplicaSync(int local_replicas, ProcessGroup* pg);

  // Every replica calls this at the same point of its loop with a vector of one length; returns
  // the element-wise sum over all replicas of all processes. Throws Error after abort().
  std::vector<double> sum(int local, const std::vector<double>& v);
  // Wakes every waiting replica with Error(why); later calls throw too.
  void abort(const std::string& why);
  bool aborted();
  int local_replicas() const { return n_; }

 private:
  int n_;
  ProcessGroup* pg_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long generation_ = 0;
  std::vector<double> accum_, result_;
  bool aborted_ = false;
  std::string why_;
};

}  // namespace incept

// Host-side sums over the replicas of a job (replica_sync.h).
#include "engine/replica_sync.h"

#include <cstring>

#include "engine/check.h"

namespace incept {

ReplicaSync::ReplicaSync(int local_replicas, ProcessGroup* pg) : n_(local_replicas), pg_(pg) {}

std::vector<double> ReplicaSync::sum(int /*local*/, const std::vector<double>& v) {
  std::unique_lock lock(mu_);
  if (aborted_) throw Error(why_);
  if (arrived_ == 0) {
    accum_ = v;
  } else {
    if (accum_.size() != v.size()) throw Error("ReplicaSync::sum: replicas disagree on the vector length");
    for (std::size_t i = 0; i < v.size(); ++i) accum_[i] += v[i];
  }
  if (++arrived_ == n_) {
    std::vector<double> total = accum_;
    if (pg_ && pg_->world() > 1) {
      std::string mine(total.size() * sizeof(double), '\0');
      std::memcpy(mine.data(), total.data(), mine.size());
      std::vector<std::string> all;
      try {
        all = pg_->all_gather(mine);
      } catch (const std::exception& e) {
        aborted_ = true;
        why_ = e.what();
        cv_.notify_all();
        throw;
      }
      std::fill(total.begin(), total.end(), 0.0);
      for (const std::string& s : all) {
        if (s.size() != mine.size()) throw Error("ReplicaSync::sum: processes disagree on the vector length");
        for (std::size_t i = 0; i < total.size(); ++i) {
          double x;
          std::memcpy(&x, s.data() + i * sizeof(double), sizeof(double));
          total[i] += x;
        }
      }
    }
    result_ = total;
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return result_;
  }
  const long gen = generation_;
  cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
  if (aborted_ && generation_ == gen) throw Error(why_);
  return result_;
}

void ReplicaSync::abort(const std::string& why) {
  std::lock_guard lock(mu_);
  if (!aborted_) {
    aborted_ = true;
    why_ = why;
  }
  cv_.notify_all();
}

bool ReplicaSync::aborted() {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

}  // namespace incept

// NCCL communicators over the job's GPUs and their watchdog (nccl_comm.h).
#include "engine/nccl_comm.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <cstring>

#include "engine/check.h"
#include "engine/log.h"

namespace incept {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point after(double s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}
void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

std::string nccl_text(ncclResult_t r) {
  std::string text = ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);
  if (last && *last) text += fmt::format(" ({})", last);
  return text;
}

constexpr double kWatchdogPeriod = 0.01;

}  // namespace

void nccl_default_environment() {
  if (!std::getenv("NCCL_NVLS_ENABLE")) ::setenv("NCCL_NVLS_ENABLE", "0", 0);
}

NcclGroup::NcclGroup(ProcessGroup& pg, const std::vector<int>& local_gpus, double timeout_s)
    : pg_(pg), pg_rank_(pg.rank()), devices_(local_gpus) {
  nccl_default_environment();
  // The callback may run after this group is gone: it only touches the shared flag.
  pg_.on_peer_lost([state = peer_lost_](const std::string& why) {
    std::lock_guard<std::mutex> lock(state->mu);
    state->why = why;
    state->lost = true;
  });
  try {
    create(timeout_s);
  } catch (const std::exception& e) {
    if (!failed_) {  // not through fail(): abort what was created and tell the peers
      abort(e.what());
      pg_.abort(e.what());
    }
    throw;
  }
  watchdog_ = std::thread([this] { watchdog(); });
}

void NcclGroup::create(double timeout_s) {
  // NCCL ranks: process rank order, then local GPU order.
  const std::vector<std::string> counts = pg_.all_gather(std::to_string(devices_.size()));
  for (int p = 0; p < pg_.world(); ++p) {
    const int n = std::stoi(counts[static_cast<std::size_t>(p)]);
    if (p < pg_rank_) first_rank_ += n;
    nccl_world_ += n;
  }
  if (devices_.empty())
    fail(fmt::format("rank {}: this process has no GPU for NCCL (--gpus)", pg_rank_), /*tell_peers=*/true);

  std::string id_bytes;
  if (pg_rank_ == 0) {
    ncclUniqueId id{};
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) fail(fmt::format("rank 0: ncclGetUniqueId failed: {}", nccl_text(r)), true);
    id_bytes.assign(id.internal, NCCL_UNIQUE_ID_BYTES);
  }
  id_bytes = pg_.broadcast(id_bytes);
  if (id_bytes.size() != NCCL_UNIQUE_ID_BYTES)
    fail(fmt::format("rank {}: received an NCCL id of {} bytes, expected {}", pg_rank_, id_bytes.size(),
                     NCCL_UNIQUE_ID_BYTES),
         true);
  ncclUniqueId id{};
  std::memcpy(id.internal, id_bytes.data(), NCCL_UNIQUE_ID_BYTES);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  comms_.resize(devices_.size());
  const bool grouped = devices_.size() > 1;  // one thread initializing several ranks must group
  if (grouped) NCCL_CHECK(ncclGroupStart());
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    CUDA_CHECK(cudaSetDevice(devices_[i]));
    ncclComm_t c = nullptr;
    const ncclResult_t r =
        ncclCommInitRankConfig(&c, nccl_world_, id, first_rank_ + static_cast<int>(i), &config);
    comms_[i] = NcclComm(c);
    if (r != ncclSuccess && r != ncclInProgress) {
      if (grouped) ncclGroupEnd();
      fail(fmt::format("rank {}: NCCL setup failed on GPU {}: {}", pg_rank_, devices_[i], nccl_text(r)),
           true);
    }
  }
  if (grouped) {
    const ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress)
      fail(fmt::format("rank {}: NCCL setup failed: {}", pg_rank_, nccl_text(r)), true);
  }
  settle(timeout_s, "communicator setup");
  log_info("rank {}: NCCL ready: GPUs {} are NCCL ranks {}..{} of {}", pg_rank_, fmt::join(devices_, ","),
           first_rank_, first_rank_ + size() - 1, nccl_world_);
}

NcclGroup::~NcclGroup() {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    stop_ = true;
  }
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (failed_) {  // aborted already: let the aborts finish (the nets and their graphs are gone by now)
    wait_for_aborts(30);
    return;
  }
  // Finalize (flushes outstanding work, non-blocking), then destroy; abort when it does not end.
  bool ok = true;
  for (auto& c : comms_) {
    const ncclResult_t r = c ? ncclCommFinalize(c) : ncclSuccess;
    ok = ok && (r == ncclSuccess || r == ncclInProgress);
  }
  const auto deadline = after(10.0);
  for (bool pending = ok; pending && ok;) {
    pending = false;
    for (auto& c : comms_) {
      ncclResult_t st = ncclSuccess;
      if (c && ncclCommGetAsyncError(c, &st) == ncclSuccess && st == ncclInProgress)
        pending = true;
      else if (st != ncclSuccess)
        ok = false;
    }
    if (pending && Clock::now() >= deadline) ok = false;
    if (pending) sleep_s(0.001);
  }
  if (!ok) {
    log_warn("rank {}: NCCL communicators did not finalize cleanly; aborting them", pg_rank_);
    abort("finalize failed");
    wait_for_aborts(30);
    return;
  }
  for (auto& c : comms_) c.reset();  // ncclCommDestroy
}

void NcclGroup::abort(const std::string& why) {
  std::vector<ncclComm_t> comms;
  {
    std::lock_guard<std::mutex> lock(comms_mu_);
    if (failed_) return;
    error_ = why;
    failed_ = true;
    for (auto& c : comms_)
      if (c) comms.push_back(c.release());
  }
  // ncclCommAbort first raises the communicator's abort flag, which ends its kernels, then
  // waits until its resources can be reclaimed, which for work captured in a CUDA graph is when
  // that graph is destroyed (seen on NCCL 2.28: the step's graph held the abort until the
  // replica tore its net down). So each communicator is aborted on its own thread: every flag is
  // raised at once, and nobody (check(), the peers' notice) waits for the reclaim.
  for (ncclComm_t c : comms) {
    aborting_->pending.fetch_add(1);
    std::thread([c, state = aborting_] {
      ncclCommAbort(c);
      state->pending.fetch_sub(1);
    }).detach();
  }
}

void NcclGroup::wait_for_aborts(double timeout_s) {
  const auto deadline = after(timeout_s);
  while (aborting_->pending.load() > 0) {
    if (Clock::now() >= deadline) {
      log_warn(
          "rank {}: {} NCCL communicator(s) still aborting after {:.0f} s (a CUDA graph holding NCCL work "
          "is still alive); leaving them",
          pg_rank_, aborting_->pending.load(), timeout_s);
      return;
    }
    sleep_s(0.001);
  }
}

[[noreturn]] void NcclGroup::fail(const std::string& why, bool tell_peers) {
  abort(why);
  if (tell_peers) pg_.abort(why);
  throw Error(why);
}

void NcclGroup::check() const {
  if (!failed_) return;
  std::lock_guard<std::mutex> lock(comms_mu_);
  throw Error(error_);
}

std::string NcclGroup::async_failure() {
  std::lock_guard<std::mutex> lock(comms_mu_);
  if (failed_) return "";
  for (std::size_t i = 0; i < comms_.size(); ++i) {
    ncclResult_t st = ncclSuccess;
    const ncclResult_t r = comms_[i] ? ncclCommGetAsyncError(comms_[i], &st) : ncclSuccess;
    if (r != ncclSuccess) st = r;
    if (st != ncclSuccess && st != ncclInProgress)
      return fmt::format("rank {}: NCCL failed on GPU {} (NCCL rank {} of {}): {}", pg_rank_, devices_[i],
                         first_rank_ + static_cast<int>(i), nccl_world_, nccl_text(st));
  }
  return "";
}

void NcclGroup::settle(double timeout_s, std::string_view what) {
  const auto deadline = after(timeout_s);
  for (;;) {
    check();
    if (peer_lost_->lost) {
      std::string why;
      {
        std::lock_guard<std::mutex> lock(peer_lost_->mu);
        why = peer_lost_->why;
      }
      fail(fmt::format("rank {}: NCCL {} aborted: {}", pg_rank_, what, why), false);
    }
    if (const std::string err = async_failure(); !err.empty()) fail(err, true);
    bool pending = false;
    {
      std::lock_guard<std::mutex> lock(comms_mu_);
      for (auto& c : comms_) {
        ncclResult_t st = ncclSuccess;
        if (c && ncclCommGetAsyncError(c, &st) == ncclSuccess && st == ncclInProgress) pending = true;
      }
    }
    if (!pending) return;
    if (Clock::now() >= deadline)
      fail(fmt::format("rank {}: NCCL {} timed out after {:.0f} s ({} GPUs in {} processes): a peer did not "
                       "start or is stuck, or the nodes cannot reach each other (NCCL_SOCKET_IFNAME, "
                       "NCCL_DEBUG=INFO)",
                       pg_rank_, what, timeout_s, nccl_world_, pg_.world()),
           true);
    sleep_s(0.0005);
  }
}

void NcclGroup::wait(cudaEvent_t done, double timeout_s, std::string_view what) {
  const auto deadline = after(timeout_s);
  double backoff = 2e-5;
  for (;;) {
    check();
    const cudaError_t q = cudaEventQuery(done);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady)
      fail(fmt::format("rank {}: waiting for NCCL {}: CUDA error {}", pg_rank_, what, cudaGetErrorString(q)),
           true);
    if (Clock::now() >= deadline)
      fail(fmt::format(
               "rank {}: NCCL {} timed out after {:.1f} s on GPUs {} (NCCL ranks {}..{} of {}): a peer "
               "hangs or is gone",
               pg_rank_, what, timeout_s, fmt::join(devices_, ","), first_rank_, first_rank_ + size() - 1,
               nccl_world_),
           true);
    sleep_s(backoff);
    backoff = std::min(backoff * 2, 1e-3);
  }
}

void NcclGroup::watch(cudaEvent_t done, double timeout_s, std::string what) {
  check();
  std::lock_guard<std::mutex> lock(watch_mu_);
  watched_.push_back({done, after(timeout_s), timeout_s, std::move(what)});
}

void NcclGroup::watchdog() {
  cudaSetDevice(devices_[0]);  // the events' context; a failure shows up as a query error below
  std::unique_lock<std::mutex> lock(watch_mu_);
  while (!stop_) {
    watch_cv_.wait_for(lock, std::chrono::duration<double>(kWatchdogPeriod));
    if (stop_ || failed_) continue;
    std::string why;
    bool tell_peers = true;
    if (peer_lost_->lost) {
      std::lock_guard<std::mutex> pl(peer_lost_->mu);
      why = fmt::format("rank {}: NCCL aborted: {}", pg_rank_, peer_lost_->why);
      tell_peers = false;
    }
    if (why.empty()) why = async_failure();
    while (why.empty() && !watched_.empty()) {
      const Watched& w = watched_.front();
      const cudaError_t q = cudaEventQuery(w.event);
      if (q == cudaSuccess) {
        watched_.pop_front();
      } else if (q != cudaErrorNotReady) {
        why = fmt::format("rank {}: NCCL {}: CUDA error {}", pg_rank_, w.what, cudaGetErrorString(q));
      } else if (Clock::now() >= w.deadline) {
        why = fmt::format("rank {}: NCCL {} timed out after {:.1f} s on GPUs {}: a peer hangs or is gone",
                          pg_rank_, w.what, w.timeout_s, fmt::join(devices_, ","));
      } else {
        break;
      }
    }
    if (why.empty()) continue;
    lock.unlock();
    log_error("{}", why);
    abort(why);
    if (tell_peers) pg_.abort(why);
    lock.lock();
  }
}

}  // namespace incept

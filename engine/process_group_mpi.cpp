// MPI process group (process_group.h), built when CMake finds MPI (INCEPT_WITH_MPI): the job
// was started by mpirun/mpiexec and MPI_COMM_WORLD is the group. Collectives are MPI's
// non-blocking ones, polled against the collective timeout so that no rank waits forever.
// Liveness is the launcher's: when a process dies, mpirun ends every other process of the job
// (Open MPI's default), so on_peer_lost only fires here on a collective timeout. A rank that
// fails or leaves without finish() skips MPI_Finalize, which makes mpirun end the job.
#ifdef INCEPT_WITH_MPI

// The C interface only: Open MPI's and MPICH's C++ bindings need a library of their own.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <fmt/format.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "engine/check.h"
#include "engine/process_group.h"

namespace incept {
namespace {

using Clock = std::chrono::steady_clock;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<std::size_t>(len));
}

class MpiProcessGroup final : public ProcessGroup {
 public:
  MpiProcessGroup(const DistEnv& env, const DistFlags& flags) : timeout_s_(flags.timeout_s) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      if (rc != MPI_SUCCESS) throw Error("MPI_Init failed: " + mpi_error_text(rc));
      owns_mpi_ = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    if (rank_ != env.rank || world_ != env.world) {
      failed_ = true;
      throw Error(fmt::format(
          "--rendezvous mpi: MPI says rank {} of {}, but this process is rank {} of {} ({}): start the job "
          "with "
          "the mpirun of the MPI this program was built with, and do not give --rank/--world-size",
          rank_, world_, env.rank, env.world, env.launcher));
    }
  }

  ~MpiProcessGroup() override {
    if (!owns_mpi_) return;
    if (finished_ && !failed_ && !peer_lost()) MPI_Finalize();
    // Otherwise the process ends without MPI_Finalize: mpirun then ends the whole job.
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string kind() const override { return "mpi"; }

  std::string broadcast(const std::string& from_rank0) override {
    check();
    std::uint64_t n = rank_ == 0 ? from_rank0.size() : 0;
    MPI_Request req;
    call(MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req), "MPI_Ibcast");
    wait(req, "broadcast");
    std::string data = rank_ == 0 ? from_rank0 : std::string(n, '\0');
    if (n > 0) {
      call(MPI_Ibcast(data.data(), static_cast<int>(n), MPI_BYTE, 0, MPI_COMM_WORLD, &req), "MPI_Ibcast");
      wait(req, "broadcast");
    }
    return data;
  }

  std::vector<std::string> all_gather(const std::string& mine) override {
    check();
    const int n = static_cast<int>(mine.size());
    std::vector<int> sizes(static_cast<std::size_t>(world_));
    MPI_Request req;
    call(MPI_Iallgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD, &req), "MPI_Iallgather");
    wait(req, "all_gather");
    std::vector<int> offsets(static_cast<std::size_t>(world_));
    int total = 0;
    for (int r = 0; r < world_; ++r) {
      offsets[static_cast<std::size_t>(r)] = total;
      total += sizes[static_cast<std::size_t>(r)];
    }
    std::string all(static_cast<std::size_t>(total), '\0');
    call(MPI_Iallgatherv(mine.data(), n, MPI_BYTE, all.data(), sizes.data(), offsets.data(), MPI_BYTE,
                         MPI_COMM_WORLD, &req),
         "MPI_Iallgatherv");
    wait(req, "all_gather");
    std::vector<std::string> parts;
    for (int r = 0; r < world_; ++r)
      parts.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]),
                                 static_cast<std::size_t>(sizes[static_cast<std::size_t>(r)])));
    return parts;
  }

  void barrier() override {
    check();
    MPI_Request req;
    call(MPI_Ibarrier(MPI_COMM_WORLD, &req), "MPI_Ibarrier");
    wait(req, "barrier");
  }

  void abort(const std::string&) override { failed_ = true; }

  void finish() override {
    barrier();
    finished_ = true;
  }

 private:
  void call(int rc, const char* what) {
    if (rc != MPI_SUCCESS) fail(fmt::format("{} failed: {}", what, mpi_error_text(rc)));
  }

  // Polls a request against the collective timeout (MPI's blocking calls have none).
  void wait(MPI_Request& req, const char* what) {
    const auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_));
    double backoff = 1e-5;
    const std::uint64_t seq = seq_++;
    for (;;) {
      int done = 0;
      call(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      if (Clock::now() >= deadline)
        fail(fmt::format("{} #{} timed out after {:g} s: a rank is missing or hangs (--dist-timeout)", what,
                         seq, timeout_s_));
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 0.01);
    }
  }

  [[noreturn]] void fail(const std::string& why) {
    failed_ = true;
    report_lost(why);
    throw_lost();
  }

  int rank_ = 0, world_ = 1;
  const double timeout_s_;
  bool owns_mpi_ = false, finished_ = false;
  std::atomic<bool> failed_{false};  // abort() may come from another thread (NcclGroup's watchdog)
  std::uint64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_mpi_process_group(const DistEnv& env, const DistFlags& flags) {
  return std::make_unique<MpiProcessGroup>(env, flags);
}

}  // namespace incept

#endif  // INCEPT_WITH_MPI

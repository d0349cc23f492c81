// File process group (process_group.h) for a filesystem that every node shares (NFS, Lustre,
// GPFS; close-to-open consistency is all it needs). Layout, all written atomically (a temporary
// file renamed into place):
//   PATH                    "incept-rendezvous 1\n<token> <world>\n", written by rank 0 last
//   PATH.<token>/hb.<r>     rank r's heartbeat: "<counter> <alive|done|failed> <message>",
//                           rewritten every heartbeat interval by a background thread
//   PATH.<token>/op.<s>.<r> rank r's part of collective number s (a broadcast has rank 0's only)
// Rank 0 removes what an earlier job left at PATH before writing a new token, so a fresh token
// folder never holds stale files; a joining rank accepts PATH only once rank 0's heartbeat in
// it advances (an old PATH whose rank 0 is gone is never joined). A peer is lost when its
// heartbeat counter stops changing for peer_timeout_s (measured on this node's clock, so clocks
// need not agree), or its heartbeat says "failed" or (before finish) "done".
// Each rank deletes its own collective files once every rank has passed them (after the next
// all_gather), and rank 0 removes the token folder and PATH after a clean finish().
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "engine/check.h"
#include "engine/process_group.h"

namespace incept {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
Clock::time_point after(double s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}
void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

std::optional<std::string> read_file(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  ::close(fd);
  return out;
}

// Writes `data` to a temporary file beside `p` and renames it over `p` (readers see all or nothing).
void write_atomic(const fs::path& p, std::string_view data) {
  const fs::path tmp =
      p.parent_path() / fmt::format(".tmp.{}.{}.{}", p.filename().string(), ::getpid(),
                                    std::hash<std::thread::id>()(std::this_thread::get_id()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno)));
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(fmt::format("cannot write {}: {}", tmp.string(), std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), p.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(fmt::format("cannot write {}: {}", p.string(), std::strerror(err)));
  }
}

std::string random_token() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}{:06x}", rd(), rd(), rd(),
                     static_cast<unsigned>(::getpid()) & 0xffffff);
}

struct JobFile {
  std::string token;
  int world = 0;
};
std::optional<JobFile> parse_job_file(const std::string& text) {
  std::istringstream in(text);
  std::string magic;
  int version = 0;
  JobFile j;
  if (!(in >> magic >> version >> j.token >> j.world) || magic != "incept-rendezvous" || version != 1)
    return std::nullopt;
  return j;
}

struct Heartbeat {
  long long counter = -1;
  std::string state;  // alive, done, failed
  std::string message;
};
std::optional<Heartbeat> parse_heartbeat(const std::string& text) {
  Heartbeat h;
  std::istringstream in(text);
  if (!(in >> h.counter >> h.state)) return std::nullopt;
  std::getline(in >> std::ws, h.message);
  return h;
}

class FileProcessGroup final : public ProcessGroup {
 public:
  FileProcessGroup(const DistEnv& env, const DistFlags& flags, std::string path)
      : rank_(env.rank),
        world_(env.world),
        path_(std::move(path)),
        timeout_s_(flags.timeout_s),
        peer_timeout_s_(flags.peer_timeout_s),
        beat_s_(heartbeat_interval(flags.peer_timeout_s)) {
    const fs::path parent = fs::absolute(path_).parent_path();
    std::error_code ec;
    if (!fs::is_directory(parent, ec))
      throw Error(
          fmt::format("rank {}: rendezvous {}: the folder {} does not exist (it must be on a filesystem "
                      "every node shares)",
                      rank_, where(), parent.string()));
    const auto deadline = after(timeout_s_);
    if (rank_ == 0)
      create_job();
    else
      find_job(deadline);
    monitor_ = std::thread([this] { monitor(); });
    try {
      wait_for_everyone(deadline);
    } catch (const Error& e) {
      stop_ = true;
      monitor_.join();
      try {
        write_heartbeat("failed", e.what());
      } catch (const Error&) {
      }
      throw;
    }
  }

  ~FileProcessGroup() override {
    stop_ = true;
    if (monitor_.joinable()) monitor_.join();
    if (!finished_ && !aborted_) {
      try {
        write_heartbeat(
            "failed", peer_lost() ? lost_reason()
                                  : "it left the job before finishing (its process is ending; see its log)");
      } catch (const Error&) {
      }
    }
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string kind() const override { return "file"; }

  std::string broadcast(const std::string& from_rank0) override {
    check();
    const std::uint64_t seq = seq_++;
    if (rank_ == 0) {
      write_op(seq, from_rank0);
      return from_rank0;
    }
    return wait_op(seq, 0, "broadcast");
  }

  std::vector<std::string> all_gather(const std::string& mine) override {
    check();
    const std::uint64_t seq = seq_++;
    write_op(seq, mine);
    std::vector<std::string> parts(static_cast<std::size_t>(world_));
    for (int r = 0; r < world_; ++r)
      parts[static_cast<std::size_t>(r)] = r == rank_ ? mine : wait_op(seq, r, "all_gather");
    // Every rank has started collective `seq`, so none reads this rank's earlier files again.
    for (std::uint64_t s : written_)
      if (s < seq) ::unlink(op_path(s, rank_).c_str());
    std::erase_if(written_, [seq](std::uint64_t s) { return s < seq; });
    return parts;
  }

  void barrier() override { all_gather(std::string()); }

  void abort(const std::string& why) override {
    if (aborted_.exchange(true)) return;
    try {
      write_heartbeat("failed", why);
    } catch (const Error&) {
    }
  }

  void finish() override {
    finishing_ = true;  // a peer that is done has passed the final barrier: not a loss
    barrier();
    finished_ = true;
    stop_ = true;
    monitor_.join();
    try {
      write_heartbeat("done", "");
    } catch (const Error&) {
      // rank 0 already removed the folder after waiting for this rank: nothing left to say
    }
    if (rank_ != 0) return;
    // Every rank has read everything once its heartbeat says done: then the folder can go.
    const auto deadline = after(peer_timeout_s_);
    for (int r = 1; r < world_; ++r) {
      while (Clock::now() < deadline) {
        const auto text = read_file(dir_ / fmt::format("hb.{}", r));
        const auto hb = text ? parse_heartbeat(*text) : std::nullopt;
        if (hb && hb->state != "alive") break;
        sleep_s(0.005);
      }
    }
    std::error_code ec;
    const auto current = read_file(path_);
    if (current && parse_job_file(*current) && parse_job_file(*current)->token == token_)
      fs::remove(path_, ec);
    fs::remove_all(dir_, ec);
  }

 private:
  std::string where() const { return "file:" + path_; }
  fs::path op_path(std::uint64_t seq, int r) const { return dir_ / fmt::format("op.{}.{}", seq, r); }

  // "alive" until a final state ("done" or "failed") is written; the final state stays.
  void write_heartbeat(const char* state, const std::string& message) {
    std::lock_guard<std::mutex> lock(hb_mu_);
    const bool final_state = std::string_view(state) != "alive";
    if (sealed_ && !final_state) return;
    sealed_ = sealed_ || final_state;
    std::string one_line = message;
    std::replace(one_line.begin(), one_line.end(), '\n', ' ');
    write_atomic(dir_ / fmt::format("hb.{}", rank_), fmt::format("{} {} {}\n", ++counter_, state, one_line));
  }
  void write_op(std::uint64_t seq, const std::string& data) {
    write_atomic(op_path(seq, rank_), data);
    written_.push_back(seq);
  }

  // Rank 0: clear an earlier job's files, make a fresh token folder, then publish PATH.
  void create_job() {
    std::error_code ec;
    if (const auto old = read_file(path_)) {
      if (const auto j = parse_job_file(*old)) fs::remove_all(path_ + "." + j->token, ec);
      fs::remove(path_, ec);
    }
    token_ = random_token();
    dir_ = path_ + "." + token_;
    if (!fs::create_directory(dir_, ec))
      throw Error(fmt::format("rank 0: rendezvous {}: cannot create {}: {}", where(), dir_.string(),
                              ec ? ec.message() : "it exists"));
    write_heartbeat("alive", "");
    write_atomic(path_, fmt::format("incept-rendezvous 1\n{} {}\n", token_, world_));
  }

  // Other ranks: wait for a PATH whose rank 0 is alive (its heartbeat counter advances).
  void find_job(Clock::time_point deadline) {
    std::string seen = "no rendezvous file";
    std::string candidate;
    long long candidate_counter = -1;
    double backoff = 0.005;
    while (Clock::now() < deadline) {
      const auto text = read_file(path_);
      const auto job = text ? parse_job_file(*text) : std::nullopt;
      if (text && !job) seen = "a rendezvous file that is not incept's";
      if (job && job->world != world_)
        seen = fmt::format("a rendezvous file of a job of {} processes", job->world);
      if (job && job->world == world_) {
        const auto hb_text = read_file(fs::path(path_ + "." + job->token) / "hb.0");
        const auto hb = hb_text ? parse_heartbeat(*hb_text) : std::nullopt;
        seen = "only a rendezvous file of an earlier job (its rank 0 is not running)";
        if (hb && hb->state == "alive") {
          if (job->token == candidate && hb->counter != candidate_counter) {
            token_ = job->token;
            dir_ = path_ + "." + token_;
            write_heartbeat("alive", "");
            return;
          }
          if (job->token != candidate) {
            candidate = job->token;
            candidate_counter = hb->counter;
          }
        }
      }
      sleep_s(backoff);
      backoff = std::min(backoff * 2, std::min(0.1, beat_s_ / 2));
    }
    throw Error(
        fmt::format("rank {}: rank 0 did not open the rendezvous {} within {:g} s (--dist-timeout); found {}",
                    rank_, where(), timeout_s_, seen));
  }

  // Join barrier: every rank's heartbeat exists.
  void wait_for_everyone(Clock::time_point deadline) {
    std::vector<bool> here(static_cast<std::size_t>(world_), false);
    here[static_cast<std::size_t>(rank_)] = true;
    for (;;) {
      std::vector<int> missing;
      for (int r = 0; r < world_; ++r) {
        if (here[static_cast<std::size_t>(r)]) continue;
        if (read_file(dir_ / fmt::format("hb.{}", r)))
          here[static_cast<std::size_t>(r)] = true;
        else
          missing.push_back(r);
      }
      if (missing.empty()) return;
      check();
      if (Clock::now() >= deadline)
        throw Error(fmt::format(
            "rank {}: {} {} did not join the rendezvous {} within {:g} s (--dist-timeout)", rank_,
            missing.size() == 1 ? "rank" : "ranks", fmt::join(missing, ","), where(), timeout_s_));
      sleep_s(0.01);
    }
  }

  std::string wait_op(std::uint64_t seq, int r, const char* what) {
    const auto deadline = after(timeout_s_);
    double backoff = 0.0005;
    for (;;) {
      if (auto data = read_file(op_path(seq, r))) return *data;
      check();
      if (Clock::now() >= deadline) {
        const std::string why = fmt::format(
            "{} #{} timed out after {:g} s waiting for rank {} (--dist-timeout)", what, seq, timeout_s_, r);
        abort(why);
        report_lost(why);
        throw_lost();
      }
      sleep_s(backoff);
      backoff = std::min(backoff * 2, 0.02);
    }
  }

  // Heartbeat writer and peer watcher. A peer is watched from the first time its heartbeat is
  // seen (so a rank 0 that dies during the rendezvous is noticed as soon as a later death is).
  void monitor() {
    std::vector<long long> last_counter(static_cast<std::size_t>(world_), -1);
    std::vector<Clock::time_point> last_change(static_cast<std::size_t>(world_), Clock::now());
    while (!stop_) {
      try {
        write_heartbeat("alive", "");
      } catch (const Error& e) {
        report_lost(fmt::format("cannot write this rank's heartbeat: {}", e.what()));
      }
      for (int r = 0; r < world_ && !peer_lost(); ++r) {
        if (r == rank_) continue;
        const std::size_t i = static_cast<std::size_t>(r);
        const auto text = read_file(dir_ / fmt::format("hb.{}", r));
        const auto hb = text ? parse_heartbeat(*text) : std::nullopt;
        const auto now = Clock::now();
        if (last_counter[i] < 0 && !hb) continue;  // not seen yet: the rendezvous deadline applies
        if (hb && hb->state == "failed") {
          report_lost(fmt::format("rank {} failed: {}", r, hb->message));
        } else if (hb && hb->state == "done" && !finishing_) {
          report_lost(fmt::format("lost rank {}: it left the job before the others finished", r));
        } else if (hb && hb->counter != last_counter[i]) {
          last_counter[i] = hb->counter;
          last_change[i] = now;
        } else if (seconds(now - last_change[i]) > peer_timeout_s_) {
          report_lost(fmt::format(
              "lost rank {}: its heartbeat {} has not changed for {:.1f} s (the process died or "
              "hangs; --dist-peer-timeout {:g})",
              r, (dir_ / fmt::format("hb.{}", r)).string(), seconds(now - last_change[i]), peer_timeout_s_));
        }
      }
      const auto until = after(beat_s_);
      while (!stop_ && Clock::now() < until) sleep_s(std::min(0.02, beat_s_));
    }
  }

  const int rank_, world_;
  const std::string path_;
  const double timeout_s_, peer_timeout_s_, beat_s_;
  std::string token_;
  fs::path dir_;
  std::uint64_t seq_ = 0;
  std::vector<std::uint64_t> written_;
  std::mutex hb_mu_;
  long long counter_ = 0;
  bool sealed_ = false;
  std::atomic<bool> stop_{false}, finishing_{false}, finished_{false}, aborted_{false};
  std::thread monitor_;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_file_process_group(const DistEnv& env, const DistFlags& flags,
                                                      const std::string& path) {
  return std::make_unique<FileProcessGroup>(env, flags, path);
}

}  // namespace incept

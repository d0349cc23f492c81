// Process groups across real processes on this machine (tests/dist_peer, file and TCP
// rendezvous on 127.0.0.1): every rank gets rank 0's 128-byte id, all_gather and barriers work,
// a rank killed with SIGKILL makes every other rank fail with an error naming it within the
// documented bound (never a hang), and a rank that never starts ends the rendezvous with a
// timeout naming it. Each scenario runs under a hard limit far above its bound.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/process_group.h"
#include "testing/subprocess.h"
#include "testing/test_util.h"

namespace incept {
namespace {

using testing::Subprocess;
using testing::TempDir;

constexpr double kPeerTimeout = 1.5;  // --peer-timeout of the scenarios (the liveness bound)
constexpr double kJoinTimeout = 20;   // --timeout when every rank starts
constexpr double kSlack = 6;          // a loaded 2-core CI machine: process start-up, scheduling
constexpr double kHardLimit = 60;     // no scenario may run longer than this

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

class Job {
 public:
  Job(std::string rendezvous, int world, std::string action)
      : rendezvous_(std::move(rendezvous)), world_(world), action_(std::move(action)) {}
  // A TCP rendezvous on a free port of 127.0.0.1, or a file in a folder of its own (rdv_dir()).
  Job(bool tcp, int world, std::string action) : world_(world), action_(std::move(action)) {
    std::filesystem::create_directory(rdv_dir());
    rendezvous_ = tcp ? fmt::format("tcp:127.0.0.1:{}", testing::free_local_port())
                      : "file:" + (rdv_dir() / "job.rdv").string();
  }
  std::filesystem::path rdv_dir() const { return dir_ / "rdv"; }
  bool tcp() const { return rendezvous_.starts_with("tcp:"); }
  double started() const { return start_s_; }
  std::vector<std::string> args(int rank, const std::vector<std::string>& extra) const {
    std::vector<std::string> a{testing::test_program("dist_peer"),
                               "--rank",
                               std::to_string(rank),
                               "--world",
                               std::to_string(world_),
                               "--rendezvous",
                               rendezvous_,
                               "--action",
                               action_,
                               "--peer-timeout",
                               fmt::format("{}", kPeerTimeout),
                               "--out",
                               (dir_ / "out").string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  void start(int rank, const std::vector<std::string>& extra = {}) {
    procs_.emplace_back(args(rank, extra), dir_ / fmt::format("log.{}", rank));
    ranks_.push_back(rank);
  }
  void start_all(const std::vector<std::string>& extra = {}) {
    for (int r = 0; r < world_; ++r) start(r, extra);
  }
  bool wait(double limit_s = kHardLimit) { return testing::wait_all(procs_, limit_s); }
  // Waits for the given ranks only (the others may be stopped); false on the limit.
  bool wait_ranks(const std::vector<int>& ranks, double limit_s) {
    const double until = testing::test_clock_s() + limit_s;
    for (;;) {
      bool all = true;
      for (int r : ranks) all = proc(r).poll() && all;
      if (all) return true;
      if (testing::test_clock_s() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  Subprocess& proc(int rank) {
    for (std::size_t i = 0; i < ranks_.size(); ++i)
      if (ranks_[i] == rank) return procs_[i];
    throw std::runtime_error("no such rank");
  }
  std::string out(int rank) const { return testing::read_file(dir_ / fmt::format("out.{}", rank)); }
  std::string report(int rank) {
    return fmt::format("rank {}: exit {} signal {}\n--- out\n{}--- log\n{}", rank, proc(rank).exit_code(),
                       proc(rank).term_signal(), out(rank), proc(rank).log());
  }
  const std::filesystem::path& dir() const { return dir_; }
  int world() const { return world_; }

 private:
  TempDir tmp_{"incept_pg"};
  std::filesystem::path dir_ = tmp_.path();
  std::string rendezvous_;
  int world_;
  std::string action_;
  std::vector<Subprocess> procs_;
  std::vector<int> ranks_;
  double start_s_ = testing::test_clock_s();
};

std::string tcp_rendezvous() {
  return fmt::format("tcp:127.0.0.1:{}", testing::free_local_port());
}

// Every rank exits 0, printed the same id (128 bytes) and the same gathered parts.
void expect_exchange(Job& job, int world) {
  ASSERT_TRUE(job.wait()) << "the job hung";
  std::string id0, gather0;
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(job.proc(r).exit_code(), 0) << job.report(r);
    const std::string out = job.out(r);
    const std::string id = testing::line_starting(out, "id ");
    EXPECT_EQ(id.size(), 3u + 256u) << out;  // 128 bytes in hex
    if (r == 0) {
      id0 = id;
      gather0 = testing::line_starting(out, "gather ");
    }
    EXPECT_EQ(id, id0);
    EXPECT_EQ(testing::line_starting(out, "gather "), gather0);
    EXPECT_HAS(out, "\nok\n");
  }
  for (int r = 0; r < world; ++r) EXPECT_HAS(gather0, fmt::format("rank {} pid {}", r, job.proc(r).pid()));
}

// The victim dies by SIGKILL; every other rank exits 3 with an error naming it, within the bound.
void expect_loss(Job& job, int world, int victim, double bound_s) {
  ASSERT_TRUE(job.wait()) << "a rank hung after rank " << victim << " died";
  EXPECT_EQ(job.proc(victim).term_signal(), SIGKILL) << job.report(victim);
  const double died = job.proc(victim).end_seconds();
  for (int r = 0; r < world; ++r) {
    if (r == victim) continue;
    EXPECT_EQ(job.proc(r).exit_code(), 3) << job.report(r);
    const std::string error = testing::line_starting(job.out(r), "error ");
    EXPECT_HAS(error, fmt::format("error rank {}: ", r));
    EXPECT_TRUE(error.find(fmt::format("lost rank {}", victim)) != std::string::npos ||
                error.find(fmt::format("rank {} failed", victim)) != std::string::npos)
        << error;
    const double after_death = job.proc(r).end_seconds() - died;
    EXPECT_LT(after_death, bound_s + kSlack) << job.report(r);
    std::printf("rank %d ended %.2f s after rank %d died (bound %.1f s): %s\n", r, after_death, victim,
                bound_s, error.c_str());
  }
}

TEST(ProcessGroup, SingleProcess) {
  DistEnv env;
  auto pg = ProcessGroup::create(env, DistFlags{});
  EXPECT_EQ(pg->kind(), "single");
  EXPECT_EQ(pg->broadcast("x"), "x");
  EXPECT_EQ(pg->all_gather("y"), std::vector<std::string>{"y"});
  pg->barrier();
  pg->check();
  pg->finish();
}

TEST(ProcessGroup, EncodeStrings) {
  const std::vector<std::string> parts{"", std::string("\0\1\2", 3), "abc", std::string(1000, 'z')};
  EXPECT_EQ(decode_strings(encode_strings(parts), 4), parts);
  EXPECT_THROW(decode_strings(encode_strings(parts), 3), Error);
  EXPECT_THROW(decode_strings(encode_strings(parts).substr(3), 4), Error);
  EXPECT_DOUBLE_EQ(heartbeat_interval(15), 1.0);
  EXPECT_DOUBLE_EQ(heartbeat_interval(1.5), 0.3);
}

TEST(ProcessGroup, TcpRankZeroMustRunOnTheRendezvousHost) {
  DistEnv env;
  env.world = 2;
  env.rendezvous = "tcp:192.0.2.1:29500";  // TEST-NET-1: never an address of this machine
  DistFlags flags;
  flags.timeout_s = 1;
  try {
    ProcessGroup::create(env, flags);
    ADD_FAILURE() << "rank 0 started on a node that is not the rendezvous host";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "192.0.2.1 is not an address of this node");
  }
}

// Each scenario runs its TCP and file jobs at the same time (the bounds, not the CPU, set the
// time a scenario takes).
TEST(ProcessGroup, ExchangeTwoAndThree) {
  std::vector<std::unique_ptr<Job>> jobs;
  for (const bool tcp : {true, false})
    for (int world : {2, 3}) {
      jobs.push_back(std::make_unique<Job>(tcp, world, "exchange"));
      jobs.back()->start_all({"--timeout", fmt::format("{}", kJoinTimeout)});
    }
  for (auto& job : jobs) {
    SCOPED_TRACE(job->args(0, {})[6]);
    expect_exchange(*job, job->world());
    // Rank 0 cleans up after a clean finish.
    if (!job->tcp()) {
      EXPECT_TRUE(std::filesystem::is_empty(job->rdv_dir())) << "files left in " << job->rdv_dir();
    }
  }
}

TEST(ProcessGroup, FileIgnoresAStaleRendezvousOfAnEarlierJob) {
  Job job(false, 2, "exchange");
  const std::string path = (job.rdv_dir() / "job.rdv").string();
  // An earlier job that crashed: its PATH, token folder and a heartbeat that says "alive".
  std::filesystem::create_directory(path + ".0ld");
  std::ofstream(path) << "incept-rendezvous 1\n0ld 2\n";
  std::ofstream(path + ".0ld/hb.0") << "7 alive \n";
  std::ofstream(path + ".0ld/op.0.0") << std::string(128, 'S');
  job.start(1, {"--timeout", fmt::format("{}", kJoinTimeout)});  // rank 1 first: it sees the stale file
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  job.start(0, {"--timeout", fmt::format("{}", kJoinTimeout)});
  expect_exchange(job, 2);
  EXPECT_EQ(testing::line_starting(job.out(1), "id ").find("5353535353"), std::string::npos)
      << "joined the stale job";
  EXPECT_FALSE(std::filesystem::exists(path + ".0ld")) << "rank 0 removes the earlier job's files";
}

double loss_bound(const Job& job) {
  return job.tcp() ? 0.5 : kPeerTimeout + heartbeat_interval(kPeerTimeout);
}

TEST(ProcessGroup, RankKilledDuringBarrier) {
  // TCP: a non-root rank (rank 0 sees EOF and tells rank 2) and rank 0 itself; file: rank 2.
  Job tcp_peer(true, 3, "die"), tcp_root(true, 2, "die"), file(false, 3, "die");
  tcp_peer.start_all({"--victim", "1", "--timeout", "30"});
  tcp_root.start_all({"--victim", "0", "--timeout", "30"});
  file.start_all({"--victim", "2", "--timeout", "30"});
  expect_loss(tcp_peer, 3, 1, loss_bound(tcp_peer));
  expect_loss(tcp_root, 2, 0, loss_bound(tcp_root));
  expect_loss(file, 3, 2, loss_bound(file));
}

TEST(ProcessGroup, RankKilledWhileOthersOnlyWatchLiveness) {
  // No collective is pending: only the heartbeat monitor can notice; the callback runs first.
  Job tcp(true, 3, "heartbeat"), file(false, 3, "heartbeat");
  for (Job* job : {&tcp, &file}) job->start_all({"--victim", "1", "--timeout", "30"});
  for (Job* job : {&tcp, &file}) {
    expect_loss(*job, 3, 1, loss_bound(*job));
    for (int r : {0, 2}) EXPECT_HAS(job->out(r), "callback ") << "on_peer_lost did not run on rank " << r;
  }
}

TEST(ProcessGroup, HungRankIsLostAfterThePeerTimeout) {
  // The victim stops (SIGSTOP): its sockets stay open and its files stay, only silence tells.
  Job tcp(true, 3, "die"), file(false, 3, "die");
  for (Job* job : {&tcp, &file}) job->start_all({"--victim", "2", "--hang", "1", "--timeout", "30"});
  // When each victim stopped (both jobs run at once, so watch both).
  std::map<Job*, double> stopped{{&tcp, -1}, {&file, -1}};
  while ((stopped[&tcp] < 0 || stopped[&file] < 0) && testing::test_clock_s() - tcp.started() < kHardLimit) {
    for (auto& [job, t] : stopped)
      if (t < 0 && job->out(2).find("stopping") != std::string::npos) t = testing::test_clock_s();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (Job* job : {&tcp, &file}) {
    ASSERT_GT(stopped[job], 0) << job->report(2);
    ASSERT_TRUE(job->wait_ranks({0, 1}, kHardLimit)) << "a rank hung behind a stopped peer";
    const double bound = kPeerTimeout + heartbeat_interval(kPeerTimeout);
    for (int r : {0, 1}) {
      EXPECT_EQ(job->proc(r).exit_code(), 3) << job->report(r);
      const std::string error = testing::line_starting(job->out(r), "error ");
      EXPECT_HAS(error, "lost rank 2");
      EXPECT_HAS(error, job->tcp() ? "nothing heard from it" : "has not changed");
      const double after_stop = job->proc(r).end_seconds() - stopped[job];
      EXPECT_GT(after_stop, kPeerTimeout * 0.8);  // silence, not an EOF
      EXPECT_LT(after_stop, bound + kSlack);
      std::printf("%s rank %d ended %.2f s after rank 2 stopped (bound %.1f s): %s\n",
                  job->tcp() ? "tcp" : "file", r, after_stop, bound, error.c_str());
    }
    job->proc(2).kill_group(0);
  }
}

TEST(ProcessGroup, RankThatNeverStartsTimesOut) {
  constexpr double kTimeout = 2;
  Job tcp(true, 3, "exchange"), file(false, 3, "exchange");
  for (Job* job : {&tcp, &file}) {
    job->start(0, {"--timeout", fmt::format("{}", kTimeout)});
    job->start(1, {"--timeout", fmt::format("{}", kTimeout)});  // rank 2 never comes
  }
  for (Job* job : {&tcp, &file}) {
    ASSERT_TRUE(job->wait(kTimeout + 30)) << "hung instead of timing out";
    for (int r : {0, 1}) {
      // 2, or 3 where a rank learnt it from rank 0's failure report first
      EXPECT_TRUE(job->proc(r).exit_code() == 2 || job->proc(r).exit_code() == 3) << job->report(r);
      const std::string error = testing::line_starting(job->out(r), "error ");
      EXPECT_HAS(error, "rank 2 did not join the rendezvous");
      EXPECT_HAS(error, "--dist-timeout");
      const double took = job->proc(r).end_seconds() - job->started();
      EXPECT_LT(took, kTimeout + kSlack) << job->report(r);
      std::printf("%s rank %d gave up after %.2f s (timeout %.1f s): %s\n", job->tcp() ? "tcp" : "file", r,
                  took, kTimeout, error.c_str());
    }
  }
}

TEST(ProcessGroup, RankZeroThatNeverStartsTimesOut) {
  constexpr double kTimeout = 1.5;
  Job tcp(true, 2, "exchange"), file(false, 2, "exchange");
  for (Job* job : {&tcp, &file}) job->start(1, {"--timeout", fmt::format("{}", kTimeout)});
  for (Job* job : {&tcp, &file}) {
    ASSERT_TRUE(job->wait(kTimeout + 30));
    EXPECT_EQ(job->proc(1).exit_code(), 2) << job->report(1);
    const std::string error = testing::line_starting(job->out(1), "error ");
    EXPECT_HAS(error, job->tcp() ? "could not reach rank 0 at tcp:127.0.0.1:"
                                 : "rank 0 did not open the rendezvous");
    EXPECT_LT(job->proc(1).end_seconds() - job->started(), kTimeout + kSlack) << job->report(1);
  }
}

TEST(ProcessGroup, TcpRejectsAMismatchedWorldSize) {
  const std::string rdv = tcp_rendezvous();
  Job job(rdv, 2, "exchange");
  job.start(0, {"--timeout", "1.5"});
  Job other(rdv, 3, "exchange");  // started with another --world-size
  other.start(1, {"--timeout", "1.5"});
  ASSERT_TRUE(job.wait(30));
  ASSERT_TRUE(other.wait(30));
  EXPECT_HAS(testing::line_starting(other.out(1), "error "),
             "rejected this process: rank 1 was started with --world-size 3");
  EXPECT_HAS(testing::line_starting(job.out(0), "error "), "rank 1 did not join");
}

}  // namespace
}  // namespace incept

// One process of a test job (test_process_group, test_dist_mpi, test_nccl_comm): meets the
// others through a ProcessGroup and runs one scenario, writing what it saw, line by line, to
// --out (with ".<rank>" appended). Exit status: 0 the scenario passed, 3 it ended with the
// expected error (a lost peer), 2 any other error, 4 it never saw the error it waited for.
//   exchange   rank 0 broadcasts a 128-byte id; all_gather, barrier and --rounds mixed
//              collectives, each checked; finish()
//   die        after a barrier, rank --victim kills itself (SIGKILL, or with --hang 1 stops
//              itself with SIGSTOP: alive but silent, like a hung node); the others wait in
//              barriers until the group throws
//   heartbeat  as die, but the others only call check() in a loop (no collectives), as a
//              trainer does while the GPUs talk; the on_peer_lost callback must run first
//   nccl       (GPU) NcclGroup over --gpus; all-reduce checks; with --victim, the victim dies
//              after the first all-reduce and the others' next all-reduce must fail
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nccl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/dist_env.h"
#include "engine/nccl_comm.h"
#include "engine/process_group.h"

namespace {

using namespace incept;

std::mutex g_out_mu;
std::FILE* g_out = stdout;

template <typename... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::lock_guard<std::mutex> lock(g_out_mu);
  const std::string line = fmt::format(f, std::forward<Args>(args)...);
  std::fprintf(g_out, "%s\n", line.c_str());
  std::fflush(g_out);
}

std::string hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

struct Args {
  DistFlags flags;
  std::string action = "exchange", out, gpus;
  int victim = -1, rounds = 12;
  bool hang = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rank")
      a.flags.rank = std::stoi(v);
    else if (k == "--world")
      a.flags.world = std::stoi(v);
    else if (k == "--rendezvous")
      a.flags.rendezvous = v;
    else if (k == "--timeout")
      a.flags.timeout_s = std::stod(v);
    else if (k == "--peer-timeout")
      a.flags.peer_timeout_s = std::stod(v);
    else if (k == "--action")
      a.action = v;
    else if (k == "--out")
      a.out = v;
    else if (k == "--victim")
      a.victim = std::stoi(v);
    else if (k == "--hang")
      a.hang = v == "1";
    else if (k == "--rounds")
      a.rounds = std::stoi(v);
    else if (k == "--gpus")
      a.gpus = v;
    else
      throw std::runtime_error("unknown argument " + k);
  }
  return a;
}

void exchange(ProcessGroup& pg, int rounds) {
  std::string id;
  if (pg.rank() == 0) {  // every byte value, in a random order: the id is binary
    id.resize(128);
    std::mt19937 rng(static_cast<unsigned>(::getpid()));
    for (int i = 0; i < 128; ++i)
      id[static_cast<std::size_t>(i)] = static_cast<char>((i * 2 + rng() % 2) & 0xff);
    std::shuffle(id.begin(), id.end(), rng);
  }
  id = pg.broadcast(id);
  expect(id.size() == 128, "a 128-byte id");
  say("id {}", hex(id));
  const std::vector<std::string> parts = pg.all_gather(fmt::format("rank {} pid {}", pg.rank(), ::getpid()));
  expect(static_cast<int>(parts.size()) == pg.world(), "one part per rank");
  for (int r = 0; r < pg.world(); ++r)
    expect(parts[static_cast<std::size_t>(r)].starts_with(fmt::format("rank {} ", r)),
           "part of rank " + std::to_string(r));
  say("gather {}", fmt::join(parts, "|"));
  pg.barrier();
  for (int i = 0; i < rounds; ++i) {
    if (i % 3 == 0) {
      const std::string b =
          pg.broadcast(pg.rank() == 0 ? std::string(static_cast<std::size_t>(i * 100), 'a' + i % 26) : "");
      expect(b == std::string(static_cast<std::size_t>(i * 100), 'a' + i % 26),
             "broadcast round " + std::to_string(i));
    } else if (i % 3 == 1) {
      const auto g = pg.all_gather(fmt::format("{}:{}", pg.rank(), i));
      for (int r = 0; r < pg.world(); ++r)
        expect(g[static_cast<std::size_t>(r)] == fmt::format("{}:{}", r, i),
               "all_gather round " + std::to_string(i));
    } else {
      pg.barrier();
    }
  }
  pg.finish();
  say("ok");
}

[[noreturn]] void die() {
  say("dying");
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

int wait_for_loss(ProcessGroup& pg, const Args& a) {
  pg.on_peer_lost([](const std::string& why) { say("callback {}", why); });
  pg.barrier();
  say("joined");
  if (pg.rank() == a.victim && a.hang) {
    say("stopping");
    ::kill(::getpid(), SIGSTOP);
  }
  if (pg.rank() == a.victim) die();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    if (a.action == "die") {
      pg.barrier();
    } else {
      pg.check();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  say("no error within 60 s");
  return 4;
}

// Raw CUDA runtime calls only: this program links no cuBLAS/cuDNN (see tests/CMakeLists.txt).
int nccl(ProcessGroup& pg, const DistEnv& env, const Args& a) {
  const std::vector<int> gpus = local_gpus(env, a.gpus);
  NcclGroup group(pg, gpus, a.flags.timeout_s);
  say("nccl ranks {}..{} of {}", group.nccl_rank(0), group.nccl_rank(group.size() - 1), group.nccl_world());
  constexpr std::size_t kCount = 1 << 20;
  const std::size_t n = static_cast<std::size_t>(group.size());
  std::vector<float*> bufs(n);
  std::vector<cudaStream_t> streams(n);
  std::vector<cudaEvent_t> events(n);
  for (std::size_t i = 0; i < n; ++i) {
    CUDA_CHECK(cudaSetDevice(group.device(static_cast<int>(i))));
    CUDA_CHECK(cudaMalloc(&bufs[i], kCount * sizeof(float)));
    CUDA_CHECK(cudaStreamCreateWithFlags(&streams[i], cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&events[i], cudaEventDisableTiming));
  }
  const int world = group.nccl_world();
  const float expected = static_cast<float>(world * (world + 1) / 2);
  std::vector<float> host(kCount);
  for (int step = 0;; ++step) {
    for (std::size_t i = 0; i < n; ++i) {
      CUDA_CHECK(cudaSetDevice(group.device(static_cast<int>(i))));
      std::fill(host.begin(), host.end(), static_cast<float>(group.nccl_rank(static_cast<int>(i)) + 1));
      CUDA_CHECK(cudaMemcpy(bufs[i], host.data(), kCount * sizeof(float), cudaMemcpyHostToDevice));
    }
    NCCL_CHECK(ncclGroupStart());
    for (std::size_t i = 0; i < n; ++i) {
      const ncclResult_t r = ncclAllReduce(bufs[i], bufs[i], kCount, ncclFloat, ncclSum,
                                           group.comm(static_cast<int>(i)), streams[i]);
      if (r != ncclSuccess && r != ncclInProgress) NCCL_CHECK(r);
    }
    const ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress) NCCL_CHECK(r);
    group.settle(a.flags.timeout_s, "all-reduce enqueue");
    for (std::size_t i = 0; i < n; ++i) {
      CUDA_CHECK(cudaSetDevice(group.device(static_cast<int>(i))));
      CUDA_CHECK(cudaEventRecord(events[i], streams[i]));
    }
    for (std::size_t i = 0; i < n; ++i) group.wait(events[i], 10.0, "all-reduce");
    for (std::size_t i = 0; i < n; ++i) {
      CUDA_CHECK(cudaSetDevice(group.device(static_cast<int>(i))));
      CUDA_CHECK(cudaMemcpy(host.data(), bufs[i], kCount * sizeof(float), cudaMemcpyDeviceToHost));
      expect(host.front() == expected && host.back() == expected, fmt::format("all-reduce sum {}", expected));
    }
    if (step == 0) say("allreduce ok {}", expected);
    if (a.victim < 0 && step == 2) break;
    if (pg.rank() == a.victim) die();
  }
  pg.finish();
  say("ok");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_peer: %s\n", e.what());
    return 2;
  }
  int rank_for_file = a.flags.rank;
  try {
    const DistEnv env = detect_dist_env(a.flags);
    rank_for_file = env.rank;
    if (!a.out.empty()) {
      g_out = std::fopen(fmt::format("{}.{}", a.out, env.rank).c_str(), "w");
      if (!g_out) throw Error("cannot write " + a.out);
    }
    say("env {}", describe(env));
    auto pg = ProcessGroup::create(env, a.flags);
    say("group {} rank {} of {}", pg->kind(), pg->rank(), pg->world());
    if (a.action == "exchange") {
      exchange(*pg, a.rounds);
      return 0;
    }
    if (a.action == "die" || a.action == "heartbeat") return wait_for_loss(*pg, a);
    if (a.action == "nccl") return nccl(*pg, env, a);
    throw Error("unknown --action " + a.action);
  } catch (const Error& e) {
    const std::string msg = e.what();
    const bool expected =
        msg.find("lost rank") != std::string::npos || msg.find("failed:") != std::string::npos;
    say("error {}", msg);
    std::fprintf(stderr, "dist_peer rank %d: %s\n", rank_for_file, msg.c_str());
    return expected ? 3 : 2;
  } catch (const std::exception& e) {
    say("error {}", e.what());
    return 2;
  }
}

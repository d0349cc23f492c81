// NcclGroup on real GPUs: one process over every local GPU all-reduces correctly; wait() and
// the watchdog turn a collective that never completes into an error within the bound (a host
// callback that blocks the stream stands in for a hung peer); and across two processes with
// one GPU each (tests/dist_peer, TCP rendezvous on 127.0.0.1, also with NCCL forced onto its
// network transport), the all-reduce is right and a killed peer makes the survivor's next
// all-reduce fail with an error naming it instead of hanging. Skips without the GPUs.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/nccl_comm.h"
#include "engine/owners.h"
#include "engine/process_group.h"
#include "testing/subprocess.h"
#include "testing/test_util.h"

namespace incept {
namespace {

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

TEST(NcclGroup, OneProcessAllReducesOverEveryGpu) {
  INCEPT_REQUIRE_GPU();
  auto pg = make_single_process_group();
  NcclGroup group(*pg, parse_gpu_list("all"), 120);
  ASSERT_EQ(group.size(), gpu_count());
  ASSERT_EQ(group.nccl_world(), gpu_count());
  constexpr std::size_t kCount = 4096;
  std::vector<DeviceBuffer> bufs;
  std::vector<Stream> streams;
  std::vector<Event> done;
  for (int i = 0; i < group.size(); ++i) {
    CUDA_CHECK(cudaSetDevice(group.device(i)));
    bufs.emplace_back(kCount * sizeof(float));
    std::vector<float> host(kCount, static_cast<float>(i + 1));
    bufs.back().upload(host.data(), kCount * sizeof(float));
    streams.push_back(make_stream());
    done.push_back(make_event(false));
  }
  NCCL_CHECK(ncclGroupStart());
  for (int i = 0; i < group.size(); ++i) {
    const ncclResult_t r =
        ncclAllReduce(bufs[i].data(), bufs[i].data(), kCount, ncclFloat, ncclSum, group.comm(i), streams[i]);
    ASSERT_TRUE(r == ncclSuccess || r == ncclInProgress) << ncclGetErrorString(r);
  }
  const ncclResult_t r = ncclGroupEnd();
  ASSERT_TRUE(r == ncclSuccess || r == ncclInProgress) << ncclGetErrorString(r);
  group.settle(30, "all-reduce enqueue");
  for (int i = 0; i < group.size(); ++i) {
    CUDA_CHECK(cudaSetDevice(group.device(i)));
    CUDA_CHECK(cudaEventRecord(done[i], streams[i]));
  }
  for (int i = 0; i < group.size(); ++i) group.wait(done[i], 30, "all-reduce");
  const int n = group.size();
  for (int i = 0; i < n; ++i) {
    std::vector<float> host(kCount);
    CUDA_CHECK(cudaSetDevice(group.device(i)));
    bufs[i].download(host.data(), kCount * sizeof(float));
    EXPECT_EQ(host[0], n * (n + 1) / 2.0f);
    EXPECT_EQ(host[kCount - 1], n * (n + 1) / 2.0f);
  }
  group.check();
}

// A stream blocked by a host callback until released: its event never completes meanwhile.
// A hung peer, as NCCL sees it: of the two ranks of a communicator pair (GPUs 0 and 1 of this
// process), only rank 0 enters the all-reduce, so its kernel waits for a peer that never comes.
// (A host callback blocking a stream is no stand-in: ncclCommAbort frees memory, which waits
// for every stream of the device.) Only ncclCommAbort ends such a kernel.
struct HungAllReduce {
  static constexpr std::size_t kCount = (std::size_t(1) << 20) / 4;
  DeviceBuffer buf, peer_buf;
  Stream stream, peer_stream;
  Event event;
  explicit HungAllReduce(NcclGroup& g) {
    // Both ranks all-reduce once first, so NCCL has connected and the call below is enqueued.
    CUDA_CHECK(cudaSetDevice(g.device(1)));
    peer_buf = DeviceBuffer(kCount * 4);
    peer_stream = make_stream();
    CUDA_CHECK(cudaSetDevice(g.device(0)));
    buf = DeviceBuffer(kCount * 4);
    stream = make_stream();
    event = make_event(false);
    NCCL_CHECK(ncclGroupStart());
    for (int i = 0; i < 2; ++i) {
      CUDA_CHECK(cudaSetDevice(g.device(i)));
      void* p = i == 0 ? buf.data() : peer_buf.data();
      const ncclResult_t r = ncclAllReduce(p, p, kCount, ncclFloat32, ncclSum, g.comm(i),
                                           i == 0 ? stream.get() : peer_stream.get());
      if (r != ncclSuccess && r != ncclInProgress) throw Error(ncclGetErrorString(r));
    }
    const ncclResult_t e = ncclGroupEnd();
    if (e != ncclSuccess && e != ncclInProgress) throw Error(ncclGetErrorString(e));
    g.settle(60, "warm-up all-reduce");
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaSetDevice(g.device(1)));
    CUDA_CHECK(cudaStreamSynchronize(peer_stream));
    CUDA_CHECK(cudaSetDevice(g.device(0)));
    const ncclResult_t r = ncclAllReduce(buf.data(), buf.data(), (std::size_t(1) << 20) / 4, ncclFloat32,
                                         ncclSum, g.comm(0), stream);
    if (r != ncclSuccess && r != ncclInProgress) throw Error(ncclGetErrorString(r));
    // A non-blocking communicator may still be enqueueing: aborting it meanwhile (the test's
    // next step) raced with NCCL's own thread and once crashed the test.
    g.settle(60, "hung all-reduce enqueue");
    CUDA_CHECK(cudaEventRecord(event, stream));
  }
  ~HungAllReduce() { cudaStreamSynchronize(stream); }  // returns once the abort ended the kernel
};

TEST(NcclGroup, WaitTimesOutAndAborts) {
  INCEPT_REQUIRE_GPUS(2);
  auto pg = make_single_process_group();
  NcclGroup group(*pg, {0, 1}, 120);
  std::string msg;
  double elapsed = 0;
  {
    HungAllReduce hung(group);
    const double t0 = now_s();
    try {
      group.wait(hung.event, 0.3, "test all-reduce");
    } catch (const Error& e) {
      msg = e.what();
    }
    elapsed = now_s() - t0;
  }
  EXPECT_LT(elapsed, 3.0);
  EXPECT_HAS(msg, "rank 0: NCCL test all-reduce timed out after 0.3 s");
  EXPECT_TRUE(group.failed());
  EXPECT_THROW(group.check(), Error);
}

TEST(NcclGroup, WatchdogTimesOut) {
  INCEPT_REQUIRE_GPUS(2);
  auto pg = make_single_process_group();
  NcclGroup group(*pg, {0, 1}, 120);
  HungAllReduce hung(group);
  const double t0 = now_s();
  group.watch(hung.event, 0.3, "step 7");
  while (!group.failed() && now_s() - t0 < 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_LT(now_s() - t0, 2.0);
  try {
    group.check();
    ADD_FAILURE() << "the watchdog did not fail the group";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "NCCL step 7 timed out after 0.3 s");
  }
}

// Two processes, one GPU each (dist_peer --action nccl), TCP rendezvous on 127.0.0.1.
struct TwoProcessJob {
  testing::TempDir dir{"incept_nccl"};
  std::vector<testing::Subprocess> procs;
  TwoProcessJob(int victim, const std::map<std::string, std::string>& env) {
    const std::string rdv = fmt::format("tcp:127.0.0.1:{}", testing::free_local_port());
    for (int r = 0; r < 2; ++r)
      procs.emplace_back(
          std::vector<std::string>{testing::test_program("dist_peer"), "--rank", std::to_string(r), "--world",
                                   "2", "--rendezvous", rdv, "--gpus", std::to_string(r), "--action", "nccl",
                                   "--victim", std::to_string(victim), "--peer-timeout", "5", "--timeout",
                                   "120", "--out", (dir / "out").string()},
          dir / fmt::format("log.{}", r), env);
  }
  std::string out(int r) const {
    std::ifstream in(dir / fmt::format("out.{}", r));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string report(int r) const {
    return fmt::format("exit {} signal {}\n{}\n{}", procs[r].exit_code(), procs[r].term_signal(), out(r),
                       procs[r].log());
  }
};

TEST(NcclGroup, TwoProcessesAllReduce) {
  INCEPT_REQUIRE_GPUS(2);
  for (const bool network : {false, true}) {
    std::map<std::string, std::string> env;
    if (network) env = {{"NCCL_P2P_DISABLE", "1"}, {"NCCL_SHM_DISABLE", "1"}};  // as if on two nodes
    TwoProcessJob job(-1, env);
    ASSERT_TRUE(testing::wait_all(job.procs, 240)) << "hung";
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(job.procs[r].exit_code(), 0) << job.report(r);
      EXPECT_HAS(job.out(r), "allreduce ok 3");
      EXPECT_HAS(job.out(r), "\nok\n");
    }
  }
}

TEST(NcclGroup, KilledPeerFailsTheSurvivorsAllReduce) {
  INCEPT_REQUIRE_GPUS(2);
  TwoProcessJob job(1, {});
  ASSERT_TRUE(testing::wait_all(job.procs, 240)) << "the survivor hung";
  EXPECT_EQ(job.procs[1].term_signal(), SIGKILL) << job.report(1);
  EXPECT_EQ(job.procs[0].exit_code(), 3) << job.report(0);
  EXPECT_HAS(job.out(0), "lost rank 1");
  const double after = job.procs[0].end_seconds() - job.procs[1].end_seconds();
  std::printf("survivor ended %.2f s after its peer died\n", after);
  EXPECT_LT(after, 15.0) << job.report(0);
}

}  // namespace
}  // namespace incept

// The mpi rendezvous under a real mpirun (Open MPI): 2 and 3 ranks of tests/dist_peer find
// their rank from OMPI_COMM_WORLD_*, exchange rank 0's 128-byte id, all_gather and barrier
// through MPI; and a rank that dies ends the whole job through mpirun (MPI's own liveness)
// instead of leaving the others waiting. Skipped, with the reason, where this build has no MPI
// or mpirun is not installed (CTest reports "skipped").
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/dist_env.h"
#include "testing/subprocess.h"
#include "testing/test_util.h"

namespace incept {
namespace {

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

#define REQUIRE_MPI()                                                          \
  do {                                                                         \
    const std::string incept_why_ = mpi_missing();                             \
    if (!incept_why_.empty()) {                                                \
      std::printf("[  SKIPPED ] MPI test skipped: %s\n", incept_why_.c_str()); \
      GTEST_SKIP() << incept_why_;                                             \
    }                                                                          \
  } while (0)

std::string mpirun_path() {
  return INCEPT_MPIRUN;
}

std::string mpi_missing() {
  if (!mpi_built()) return "this build has no MPI (install libopenmpi-dev openmpi-bin and reconfigure)";
  const std::string mpirun = mpirun_path();
  if (mpirun.empty() || mpirun.find("NOTFOUND") != std::string::npos || !std::filesystem::exists(mpirun))
    return "mpirun not found (install openmpi-bin)";
  return "";
}

// mpirun -np N dist_peer --rendezvous mpi ..., as root too, on a machine with fewer cores.
// Without --rendezvous, processes started by mpirun meet through MPI by default.
testing::Subprocess mpirun(int np, const std::vector<std::string>& peer_args,
                           const std::filesystem::path& log, bool explicit_rendezvous = true) {
  std::vector<std::string> argv{mpirun_path(),         "-np",
                                std::to_string(np),    "--oversubscribe",
                                "--allow-run-as-root", testing::test_program("dist_peer")};
  if (explicit_rendezvous) argv.insert(argv.end(), {"--rendezvous", "mpi"});
  argv.insert(argv.end(), peer_args.begin(), peer_args.end());
  // Shared memory only (no network probing), and no CMA single-copy (containers forbid ptrace).
  return testing::Subprocess(
      argv, log, {{"OMPI_MCA_btl", "self,vader"}, {"OMPI_MCA_btl_vader_single_copy_mechanism", "none"}},
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID",
       "SLURM_STEP_ID"});
}

TEST(DistMpi, MpirunExchangesTheId) {
  REQUIRE_MPI();
  for (int np : {2, 3}) {
    testing::TempDir dir("incept_mpi");
    std::vector<testing::Subprocess> procs;
    procs.push_back(mpirun(np, {"--action", "exchange", "--timeout", "30", "--out", (dir / "out").string()},
                           dir / "mpirun.log", /*explicit_rendezvous=*/np == 2));
    ASSERT_TRUE(testing::wait_all(procs, 60)) << "mpirun hung\n" << procs[0].log();
    ASSERT_EQ(procs[0].exit_code(), 0) << procs[0].log();
    std::string id0;
    for (int r = 0; r < np; ++r) {
      const std::string out = testing::read_file(dir / fmt::format("out.{}", r));
      EXPECT_HAS(out, fmt::format("env rank {}/{}", r, np));
      EXPECT_HAS(out, "openmpi, rendezvous mpi");
      EXPECT_HAS(out, fmt::format("group mpi rank {} of {}", r, np));
      const std::string id = testing::line_starting(out, "id ");
      EXPECT_EQ(id.size(), 3u + 256u) << out;
      if (r == 0) id0 = id;
      EXPECT_EQ(id, id0);
      for (int q = 0; q < np; ++q)
        EXPECT_HAS(testing::line_starting(out, "gather "), fmt::format("rank {} pid", q));
      EXPECT_HAS(out, "\nok\n");
    }
  }
}

TEST(DistMpi, ADeadRankEndsTheJob) {
  REQUIRE_MPI();
  testing::TempDir dir("incept_mpi");
  std::vector<testing::Subprocess> procs;
  procs.push_back(
      mpirun(3, {"--action", "die", "--victim", "1", "--timeout", "30", "--out", (dir / "out").string()},
             dir / "mpirun.log"));
  const double start = testing::test_clock_s();
  ASSERT_TRUE(testing::wait_all(procs, 60)) << "mpirun hung after a rank died\n" << procs[0].log();
  const double took = testing::test_clock_s() - start;
  EXPECT_NE(procs[0].exit_code(), 0) << procs[0].log();
  EXPECT_HAS(testing::read_file(dir / "out.1"), "dying");
  for (int r : {0, 2})
    EXPECT_EQ(testing::read_file(dir / fmt::format("out.{}", r)).find("\nok\n"), std::string::npos);
  std::printf("mpirun ended %.2f s after start (exit %d): %s\n", took, procs[0].exit_code(),
              testing::line_starting(procs[0].log(), "mpirun").c_str());
  EXPECT_LT(took, 30);
}

}  // namespace
}  // namespace incept

// Who a process is in a job (dist_env.h): every launcher's environment, flag precedence, the
// error messages for inconsistent values, the rendezvous forms and the GPUs each process takes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "engine/check.h"
#include "engine/dist_env.h"
#include "engine/nccl_comm.h"
#include "testing/test_util.h"

namespace incept {
namespace {

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

DistFlags with_rendezvous(std::string r) {
  DistFlags f;
  f.rendezvous = std::move(r);
  return f;
}

TEST(DistEnv, NoLauncherNoFlagsIsOneProcess) {
  const DistEnv d = detect_dist_env(DistFlags{}, EnvMap{{"HOME", "/root"}});
  EXPECT_EQ(d.rank, 0);
  EXPECT_EQ(d.world, 1);
  EXPECT_EQ(d.local_rank, 0);
  EXPECT_EQ(d.local_world, 1);
  EXPECT_EQ(d.launcher, "none");
  EXPECT_EQ(d.rendezvous, "");
}

TEST(DistEnv, OpenMpi) {
  const EnvMap env{{"OMPI_COMM_WORLD_RANK", "3"},
                   {"OMPI_COMM_WORLD_SIZE", "4"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
  const DistEnv d = detect_dist_env(with_rendezvous("tcp:node0:29500"), env);
  EXPECT_EQ(d.launcher, "openmpi");
  EXPECT_EQ(d.rank, 3);
  EXPECT_EQ(d.world, 4);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world, 2);
  EXPECT_EQ(d.rendezvous, "tcp:node0:29500");
  // Without --rendezvous, mpirun's processes meet through MPI (when this build has it).
  if (mpi_built()) {
    EXPECT_EQ(detect_dist_env(DistFlags{}, env).rendezvous, "mpi");
  } else {
    EXPECT_HAS(testing::error_of([&] { detect_dist_env(DistFlags{}, env); }), "this build has no MPI");
  }
}

TEST(DistEnv, MpichAndIntelMpi) {
  const EnvMap env{{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "1"}};
  const DistEnv d = detect_dist_env(with_rendezvous("file:/shared/job"), env);
  EXPECT_EQ(d.launcher, "mpich");
  EXPECT_EQ(d.rank, 2);
  EXPECT_EQ(d.world, 3);
  EXPECT_EQ(d.local_world, 1);
}

TEST(DistEnv, SlurmJobStep) {
  const EnvMap env{{"SLURM_PROCID", "5"},
                   {"SLURM_STEP_ID", "0"},
                   {"SLURM_NTASKS", "99"},
                   {"SLURM_STEP_NUM_TASKS", "8"},
                   {"SLURM_LOCALID", "1"},
                   {"SLURM_NODEID", "2"},
                   {"SLURM_STEP_TASKS_PER_NODE", "2(x3),1(x2)"}};
  const DistEnv d = detect_dist_env(with_rendezvous("tcp:n0:29500"), env);
  EXPECT_EQ(d.launcher, "slurm");
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.world, 8);  // the step's tasks, not the allocation's
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world, 2);  // node 2 of 2,2,2,1,1
  // Node 3 runs one task.
  EnvMap env3 = env;
  env3["SLURM_NODEID"] = "3";
  env3["SLURM_LOCALID"] = "0";
  EXPECT_EQ(detect_dist_env(with_rendezvous("tcp:n0:29500"), env3).local_world, 1);
  // Slurm gives no rendezvous: the message shows how to make one from the node list.
  EXPECT_HAS(testing::error_of([&] { detect_dist_env(DistFlags{}, env); }), "scontrol show hostnames");
}

TEST(DistEnv, SlurmBatchScriptIsOneProcess) {
  // sbatch's script sees SLURM_PROCID=0 and SLURM_NTASKS but is not a job step.
  const EnvMap env{
      {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_ID", "77"}, {"SLURM_LOCALID", "0"}};
  const DistEnv d = detect_dist_env(DistFlags{}, env);
  EXPECT_EQ(d.launcher, "none");
  EXPECT_EQ(d.world, 1);
}

TEST(DistEnv, MpirunInsideSlurmAllocationTrustsMpirun) {
  const EnvMap env{{"SLURM_PROCID", "0"},
                   {"SLURM_STEP_ID", "0"},
                   {"SLURM_NTASKS", "1"},
                   {"OMPI_COMM_WORLD_RANK", "1"},
                   {"OMPI_COMM_WORLD_SIZE", "2"}};
  const DistEnv d = detect_dist_env(with_rendezvous("tcp:a:1"), env);
  EXPECT_EQ(d.launcher, "openmpi");
  EXPECT_EQ(d.rank, 1);
  EXPECT_EQ(d.world, 2);
}

TEST(DistEnv, FlagsWinOverTheLauncher) {
  const EnvMap env{{"OMPI_COMM_WORLD_RANK", "0"},
                   {"OMPI_COMM_WORLD_SIZE", "4"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
  DistFlags f = with_rendezvous("tcp:127.0.0.1:29500");
  f.rank = 1;
  f.world = 2;
  const DistEnv d = detect_dist_env(f, env);
  EXPECT_EQ(d.launcher, "flags");
  EXPECT_EQ(d.rank, 1);
  EXPECT_EQ(d.world, 2);
  EXPECT_EQ(d.local_world, 1);  // the launcher's placement described another process
  f.local_rank = 1;
  const DistEnv d2 = detect_dist_env(f, {});
  EXPECT_EQ(d2.local_rank, 1);
  EXPECT_EQ(d2.local_world, 0);  // unknown: one GPU per process
  // The same process as the launcher's keeps its placement.
  f = with_rendezvous("tcp:127.0.0.1:29500");
  f.rank = 0;
  f.world = 4;
  EXPECT_EQ(detect_dist_env(f, env).local_world, 4);
}

TEST(DistEnv, InconsistentValuesSayWhatIsWrong) {
  DistFlags f = with_rendezvous("tcp:h:1");
  f.rank = 2;
  f.world = 2;
  const std::string e1 = testing::error_of([&] { detect_dist_env(f, {}); });
  EXPECT_HAS(e1, "rank 2 is outside the world of 2 processes");
  EXPECT_HAS(e1, "--rank 2 --world-size 2");
  EXPECT_HAS(e1, "ranks are 0..1");

  f.world = -1;
  EXPECT_HAS(testing::error_of([&] { detect_dist_env(f, {}); }), "--rank 2 needs --world-size as well");
  f.rank = -1;
  f.world = 3;
  EXPECT_HAS(testing::error_of([&] { detect_dist_env(f, {}); }), "--world-size 3 needs --rank as well");
  f.world = 0;
  EXPECT_HAS(testing::error_of([&] { detect_dist_env(f, {}); }), "--world-size 0 must be at least 1");

  const EnvMap bad_rank{{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}};
  const std::string e2 = testing::error_of([&] { detect_dist_env(with_rendezvous("mpi"), bad_rank); });
  EXPECT_HAS(e2, "rank 4 is outside the world of 4 processes");
  EXPECT_HAS(e2, "OMPI_COMM_WORLD_RANK=4");
  EXPECT_HAS(testing::error_of([&] {
               detect_dist_env(DistFlags{}, {{"PMI_RANK", "x1"}, {"PMI_SIZE", "2"}});
             }),
             "PMI_RANK='x1' is not a non-negative whole number");
  EXPECT_HAS(testing::error_of([&] {
               detect_dist_env(DistFlags{}, {{"OMPI_COMM_WORLD_RANK", "0"}});
             }),
             "OMPI_COMM_WORLD_SIZE is not set");
  const EnvMap bad_local{{"OMPI_COMM_WORLD_RANK", "0"},
                         {"OMPI_COMM_WORLD_SIZE", "2"},
                         {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
                         {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
  EXPECT_HAS(testing::error_of([&] { detect_dist_env(with_rendezvous("tcp:h:1"), bad_local); }),
             "local rank 2 is outside the 2 processes on this node");
  EXPECT_HAS(testing::error_of([&] {
               detect_dist_env(with_rendezvous("tcp:h:1"), {{"SLURM_PROCID", "0"},
                                                            {"SLURM_STEP_ID", "1"},
                                                            {"SLURM_NTASKS", "2"},
                                                            {"SLURM_NODEID", "0"},
                                                            {"SLURM_STEP_TASKS_PER_NODE", "2(x"}});
             }),
             "not in Slurm's form");
  DistFlags t;
  t.timeout_s = 0;
  EXPECT_HAS(testing::error_of([&] { detect_dist_env(t, {}); }), "--dist-timeout 0 must be positive");
}

TEST(DistEnv, SeveralProcessesNeedARendezvous) {
  DistFlags f;
  f.rank = 0;
  f.world = 2;
  const std::string e = testing::error_of([&] { detect_dist_env(f, {}); });
  EXPECT_HAS(e, "a job of 2 processes needs a rendezvous");
  EXPECT_HAS(e, "--rendezvous tcp:HOST:PORT");
  EXPECT_HAS(e, "file:PATH");
  // One process needs none, and a given one is kept.
  f.world = 1;
  EXPECT_EQ(detect_dist_env(f, {}).rendezvous, "");
}

TEST(DistEnv, RendezvousForms) {
  const Rendezvous f = parse_rendezvous("file:/nfs/jobs/run1.rdv");
  EXPECT_EQ(f.kind, Rendezvous::Kind::kFile);
  EXPECT_EQ(f.path, "/nfs/jobs/run1.rdv");
  const Rendezvous t = parse_rendezvous("tcp:127.0.0.1:29500");
  EXPECT_EQ(t.kind, Rendezvous::Kind::kTcp);
  EXPECT_EQ(t.host, "127.0.0.1");
  EXPECT_EQ(t.port, 29500);
  EXPECT_EQ(parse_rendezvous("tcp:[::1]:80").host, "::1");
  EXPECT_EQ(parse_rendezvous("mpi").kind, Rendezvous::Kind::kMpi);
  EXPECT_EQ(parse_rendezvous("").kind, Rendezvous::Kind::kNone);
  EXPECT_HAS(testing::error_of([] { parse_rendezvous("tcp:host"); }), "expected tcp:HOST:PORT");
  EXPECT_HAS(testing::error_of([] { parse_rendezvous("tcp:host:99999"); }),
             "port must be a number from 1 to 65535");
  EXPECT_HAS(testing::error_of([] { parse_rendezvous("file:"); }), "the file path is empty");
  EXPECT_HAS(testing::error_of([] { parse_rendezvous("file:/tmp/"); }), "names a folder");
  EXPECT_HAS(testing::error_of([] { parse_rendezvous("nfs:/x"); }), "use file:PATH, tcp:HOST:PORT or mpi");
  if (!mpi_built()) {
    EXPECT_HAS(testing::error_of([] { detect_dist_env(with_rendezvous("mpi"), {}); }), "no MPI");
  }
}

TEST(DistEnv, Describe) {
  DistEnv d;
  d.rank = 1;
  d.world = 4;
  d.local_rank = 1;
  d.local_world = 2;
  d.launcher = "openmpi";
  d.rendezvous = "mpi";
  EXPECT_EQ(describe(d), "rank 1/4 (local 1/2, openmpi, rendezvous mpi)");
}

TEST(LocalGpus, OneProcessPerNodeTakesTheWholeList) {
  DistEnv d;  // one process
  EXPECT_EQ(local_gpus(d, "0,1", 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(local_gpus(d, "all", 4), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(local_gpus(d, "", 4), (std::vector<int>{0}));
  EXPECT_EQ(local_gpus(d, "1", 2), (std::vector<int>{1}));
  EXPECT_TRUE(local_gpus(d, "none", 2).empty());
  EXPECT_HAS(testing::error_of([&] { local_gpus(d, "0,2", 2); }), "GPU 2 does not exist");
  // Two nodes with one process each still take every listed GPU.
  d.world = 2;
  d.rank = 1;
  EXPECT_EQ(local_gpus(d, "0,1", 2), (std::vector<int>{0, 1}));
  EXPECT_HAS(testing::error_of([&] { local_gpus(d, "none", 2); }), "a job of 2 processes trains on GPUs");
}

TEST(LocalGpus, SeveralProcessesPerNodeTakeOneEach) {
  DistEnv d;
  d.world = 4;
  d.local_world = 2;
  d.rank = 3;
  d.local_rank = 1;
  EXPECT_EQ(local_gpus(d, "", 2), (std::vector<int>{1}));
  EXPECT_EQ(local_gpus(d, "all", 8), (std::vector<int>{1}));
  EXPECT_EQ(local_gpus(d, "5,6", 8), (std::vector<int>{6}));
  // The launcher left each process one visible GPU (CUDA_VISIBLE_DEVICES per task).
  EXPECT_EQ(local_gpus(d, "all", 1), (std::vector<int>{0}));
  const std::string e = testing::error_of([&] { local_gpus(d, "3", 8); });
  EXPECT_HAS(e, "2 processes share this node, one GPU each, but the list has 1 GPU for local rank 1");
  d.local_world = 0;  // --local-rank without a launcher
  EXPECT_EQ(local_gpus(d, "2,3", 4), (std::vector<int>{3}));
}

TEST(NcclEnvironment, NvlinkMulticastStaysOffUnlessAskedFor) {
  ::unsetenv("NCCL_NVLS_ENABLE");
  nccl_default_environment();
  EXPECT_STREQ(std::getenv("NCCL_NVLS_ENABLE"), "0");
  ::setenv("NCCL_NVLS_ENABLE", "1", 1);  // the user's choice stays
  nccl_default_environment();
  EXPECT_STREQ(std::getenv("NCCL_NVLS_ENABLE"), "1");
  ::unsetenv("NCCL_NVLS_ENABLE");
}

}  // namespace
}  // namespace incept

// DIGITS' training job (trainer.h): the processes and replicas of a job, their parameters, and
// the run. The checks and the job files are train_setup.cpp, one replica's loop train_loop.cpp.
//
// Data parallelism: one replica per GPU over all GPUs of all processes (one process with
// --gpus 0,1, or processes started by mpirun / srun / --rank), one NCCL communicator over
// them (engine/nccl_comm.h), each replica a disjoint share of every global batch. The
// replicas of one process run in threads; a failure in any of them aborts the communicators,
// wakes the others and ends the job on every process with the first error.
#include "engine/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <thread>

#include "engine/check.h"
#include "engine/gpu_input.h"
#include "engine/nccl_comm.h"
#include "engine/process_group.h"
#include "engine/snapshot.h"
#include "engine/train_internal.h"

namespace fs = std::filesystem;

namespace incept {
namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(x);
  }
  return s;
}

int share(int global, int world, const char* what) {
  if (global % world != 0)
    throw Error(fmt::format("{} {} does not split evenly over {} GPUs: use a multiple of {}", what, global,
                            world, world));
  return global / world;
}

}  // namespace

TrainResult train_job(TrainConfig c, const std::atomic<bool>* stop) {
  // ---- the job's processes and this process's GPUs ------------------------------------------------
  nccl_default_environment();
  const DistEnv env = detect_dist_env(c.dist);
  if (env.world > 1 && c.gpus.empty())
    throw Error("a job of several processes trains on GPUs: give --gpus (the CPU reference runs alone)");
  std::unique_ptr<ProcessGroup> pg = ProcessGroup::create(env, c.dist);
  const bool writer = pg->rank() == 0;  // the process that writes the job folder
  // On a resume every process reads job.json (the job folder must be on a shared filesystem).
  JobSetup j = prepare_job(c);
  const bool on_gpu = !j.c.gpus.empty();
  const int local_n = on_gpu ? int(j.c.gpus.size()) : 1;
  int first_rank = 0, world = 0;
  {
    const auto counts = pg->all_gather(std::to_string(local_n));
    for (int p = 0; p < int(counts.size()); ++p) {
      if (p < pg->rank()) first_rank += std::stoi(counts[p]);
      world += std::stoi(counts[p]);
    }
  }
  const int batch = share(j.s.batch_size, world, "--batch-size");
  const int val_batch = j.n_val > 0 ? share(j.s.val_batch_size, world, "the validation batch") : 0;

  // ---- the job folder ---------------------------------------------------------------------------
  std::optional<SnapshotFiles> resume_from;
  if (j.c.resume) {
    resume_from = latest_resumable(j.job);
    if (!resume_from)
      throw Error(
          fmt::format("--resume: {} has no snapshot with a solver state to continue from; start the job "
                      "again in a new folder",
                      j.c.job_dir));
  } else if (writer) {
    check_job_dir_for_new_job(j.job);
  }
  pg->barrier();  // the folder exists before anyone writes into it
  JobLog out;
  if (writer)
    out.open(j.job / "train.log");
  else
    out.set_quiet(true);

  // ---- the replicas --------------------------------------------------------------------------------
  std::unique_ptr<NcclGroup> nccl;
  if (world > 1) nccl = std::make_unique<NcclGroup>(*pg, j.c.gpus, c.dist.timeout_s);
  std::vector<Replica> replicas(static_cast<std::size_t>(local_n));
  const BackendConfig base = backend_template(j);
  for (int i = 0; i < local_n; ++i) {
    Replica& r = replicas[std::size_t(i)];
    r.local = i;
    r.rank = first_rank + i;
    r.world = world;
    r.batch = batch;
    r.val_batch = val_batch;
    BackendConfig bc = base;
    bc.batch = batch;
    bc.val_batch = val_batch;
    if (on_gpu) {
      bc.device = j.c.gpus[std::size_t(i)];
      bc.gpu.dropout_first_sample = std::uint64_t(r.rank) * std::uint64_t(batch);
    }
    r.backend = on_gpu ? make_gpu_backend(bc) : make_cpu_backend(bc);
    if (nccl)
      r.backend->set_grad_reduce(
          {nccl->comm(i), j.c.grad_allreduce == "fp32", nccl.get(), c.dist.step_timeout_s});
    data::LoaderOptions lo;
    lo.db = j.ds.train_db;
    lo.mode = data::LoaderMode::kTrain;
    lo.batch = batch;
    lo.global_batch = j.s.batch_size;
    lo.rank_offset = r.rank * batch;
    lo.crop = j.crop;
    lo.mirror = j.mirror;
    lo.seed = j.c.seed;
    lo.threads = j.c.loader_threads;
    lo.height = j.shape.height, lo.width = j.shape.width, lo.channels = j.shape.channels;
    const data::HostAllocator alloc = on_gpu ? pinned_allocator() : data::HostAllocator{};
    r.train_loader = std::make_unique<data::BatchLoader>(lo, alloc);
    if (val_batch > 0) {
      data::LoaderOptions vo = lo;
      vo.db = j.ds.val_db;
      vo.mode = data::LoaderMode::kVal;
      vo.batch = val_batch;
      vo.global_batch = j.s.val_batch_size;
      vo.rank_offset = r.rank * val_batch;
      vo.mirror = false;
      r.val_loader = std::make_unique<data::BatchLoader>(vo, alloc);
    }
  }
  // Pending batch releases point into the loaders: every backend finishes them first.
  struct DrainGuard {
    std::vector<Replica>& rs;
    ~DrainGuard() {
      for (Replica& r : rs) try {
          r.backend->drain();
        } catch (...) {  // already reported where it happened
        }
    }
  } drain_guard{replicas};

  const TrainBackend& b0 = *replicas[0].backend;
  if (writer && !j.c.resume) write_job_files(j);
  out.info("job {}: {} on {} ({} train / {} val records of {}x{}x{}, {} classes)", j.job.string(),
           j.c.network, j.c.dataset_dir, j.ds.train_count, j.n_val, j.shape.height, j.shape.width,
           j.shape.channels, j.classes);
  if (world > 1)
    out.info("data parallel: {} replicas ({}), {} images each per step, processes: {}", world, join(j.c.gpus),
             batch, describe(env));
  out.info("device: {}", b0.describe());
  out.info("memory: {}", b0.memory_report());
  const SolverSettings& s = j.s;
  out.info(
      "solver: base_lr {} policy {}{} momentum {} weight_decay {} batch {} (val {}) | {} iterations per "
      "epoch, "
      "max_iter {} ({:g} epochs), validation every {} iterations ({} batches), snapshot every {}, display "
      "every "
      "{}, seed {}",
      s.lr.base_lr, lr_policy_name(s.lr.policy),
      s.lr.policy == LrPolicy::kStep ? fmt::format(" stepsize {} gamma {}", s.lr.stepsize, s.lr.gamma) : "",
      s.momentum, s.weight_decay, s.batch_size, s.val_batch_size, s.train_iter, s.max_iter,
      double(s.max_iter) / double(s.train_iter), s.test_interval, s.test_iter,
      s.snapshot > 0 ? std::to_string(s.snapshot) : "(only at the end)", s.display, j.c.seed);
  std::string drops;
  for (std::int64_t it : s.lr_drops())
    drops += fmt::format("{}{} (epoch {:.2f}, lr {:g})", drops.empty() ? "" : ", ", it,
                         double(it) / double(s.train_iter), s.lr.rate(it));
  if (!drops.empty()) out.info("learning rate drops at iteration {}", drops);

  // ---- parameters: fresh, imported, or the snapshot's (the same on every replica) -----------------
  ReplicaSync sync(local_n, pg.get());
  JobRun run(j, sync, out);
  run.nccl = nccl.get();
  const NetPlan& plan = b0.train_plan();
  std::vector<float> params(plan.param_elems), momentum(plan.param_elems);
  if (resume_from) {
    const SolverStateInfo info = read_solverstate(resume_from->solverstate, plan, momentum);
    if (info.train_records != j.ds.train_count || info.val_records != j.n_val ||
        info.batch_size != s.batch_size || info.max_iter != s.max_iter || info.seed != j.c.seed)
      throw Error(
          fmt::format("--resume: {} was written for another dataset or schedule ({} train / {} val "
                      "records, batch {}, max_iter {}; now {} / {}, {}, {})",
                      resume_from->solverstate.string(), info.train_records, info.val_records,
                      info.batch_size, info.max_iter, j.ds.train_count, j.n_val, s.batch_size, s.max_iter));
    if (info.world_size != world)
      throw Error(fmt::format("--resume: the job ran on {} GPU(s), now {}: resume with the same number",
                              info.world_size, world));
    const ImportReport r = import_params(read_caffemodel(resume_from->caffemodel.string()), plan, params);
    if (!r.skipped_shape.empty() || !r.missing.empty())
      throw Error(fmt::format("--resume: {} does not fit the job's net ({} layers differ, {} missing)",
                              resume_from->caffemodel.string(), r.skipped_shape.size(), r.missing.size()));
    for (Replica& rp : replicas) {
      rp.backend->set_params(params);
      rp.backend->set_momentum(momentum);
    }
    run.start_iter = info.iter;
    run.wall_before = info.wall_s;
    run.corrupt_before = info.corrupt_skipped;
    out.info("resuming from {} (iteration {}, epoch {:.2f})", resume_from->caffemodel.filename().string(),
             run.start_iter, double(run.start_iter) / double(s.train_iter));
  } else {
    for (Replica& rp : replicas) rp.backend->init_params(j.c.seed);
    if (!j.c.weights.empty()) {
      replicas[0].backend->get_params(params);
      const ImportReport r = load_weights(j.c.weights, plan, params);
      for (Replica& rp : replicas) rp.backend->set_params(params);
      out.info(
          "initialised {} layers from {}{}", r.loaded.size(), j.c.weights,
          r.skipped_shape.empty() ? "" : fmt::format(" ({} skipped: shapes differ)", r.skipped_shape.size()));
    }
  }

  // ---- metrics and report (the writing process) ---------------------------------------------------
  std::unique_ptr<MetricsLog> metrics;
  if (writer) {
    std::vector<std::string> columns = scalar_tops(plan);
    if (val_batch > 0)
      for (const std::string& t : scalar_tops(plan_val_net(backend_template(j))))
        if (std::find(columns.begin(), columns.end(), t) == columns.end()) columns.push_back(t);
    metrics = std::make_unique<MetricsLog>(j.job.string(), columns, resume_from ? run.start_iter : -1);
    for (const MetricPoint& p : metrics->points())
      if (p.phase == "val") run.last_val_iter = std::max(run.last_val_iter, p.iteration);
    run.metrics = metrics.get();
  }
  run.last_val_iter = std::stoll(pg->broadcast(std::to_string(run.last_val_iter)));  // the writer's
  run.ri.job_name = j.job.filename().string();
  run.ri.network = j.c.network;
  run.ri.dataset = j.c.dataset_dir;
  run.ri.device = world > 1 ? fmt::format("{} x {}", world, b0.describe()) : b0.describe();
  run.ri.precision = j.precision;
  run.ri.epochs = double(s.max_iter) / double(s.train_iter);
  run.ri.max_iter = s.max_iter;
  run.ri.settings = {{"base_lr", fmt::format("{:g}", s.lr.base_lr)},
                     {"lr_policy", lr_policy_name(s.lr.policy)},
                     {"stepsize", std::to_string(s.lr.stepsize)},
                     {"gamma", fmt::format("{:g}", s.lr.gamma)},
                     {"momentum", fmt::format("{:g}", s.momentum)},
                     {"weight_decay", fmt::format("{:g}", s.weight_decay)},
                     {"batch_size", std::to_string(s.batch_size)},
                     {"val_batch_size", std::to_string(s.val_batch_size)},
                     {"GPUs", world > 1 ? std::to_string(world)
                              : on_gpu  ? "1"
                                        : "CPU"},
                     {"iterations per epoch", std::to_string(s.train_iter)},
                     {"max_iter", std::to_string(s.max_iter)},
                     {"crop", std::to_string(j.crop)},
                     {"mean", j.c.mean},
                     {"seed", std::to_string(j.c.seed)}};
  run.stop = stop;
  if (resume_from) run.result.last_snapshot = resume_from->caffemodel.string();
  run.result.max_iter = s.max_iter;

  // ---- the run -------------------------------------------------------------------------------------
  std::mutex err_mu;
  std::exception_ptr first_error;
  std::string first_what;
  auto fail = [&](std::exception_ptr e, const std::string& what) {
    {
      std::lock_guard lock(err_mu);
      if (!first_error) first_error = e, first_what = what;
    }
    run.sync.abort(what);
    if (nccl) nccl->abort(what);
  };
  auto body = [&](Replica& r) {
    try {
      r.backend->bind_thread();
      run_replica(run, r);
    } catch (const std::exception& e) {
      fail(std::current_exception(), e.what());
    } catch (...) {
      fail(std::current_exception(), "unknown error");
    }
  };
  if (local_n == 1) {
    body(replicas[0]);
  } else {
    std::vector<std::thread> threads;
    for (Replica& r : replicas) threads.emplace_back(body, std::ref(r));
    for (std::thread& t : threads) t.join();
  }
  if (first_error) {
    pg->abort(first_what);
    std::rethrow_exception(first_error);
  }
  pg->finish();
  TrainResult result = run.result;
  if (!writer) result.finished = true;
  return result;
}

}  // namespace incept

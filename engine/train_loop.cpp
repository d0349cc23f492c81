// One replica's training loop (train_internal.h: run_replica). Every replica of a job runs it
// in lockstep: the gradients meet in NCCL inside each step, and the few host numbers (training
// outputs at a display, validation sums, the stop request) meet in ReplicaSync at the same
// iterations, so every replica takes the same decisions. Job rank 0 alone writes the metrics,
// the report, the snapshots and the console.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "engine/check.h"
#include "engine/nccl_comm.h"
#include "engine/snapshot.h"
#include "engine/train_internal.h"

namespace fs = std::filesystem;

namespace incept {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double value_of(const OutputSums& v, const std::string& name) {
  for (const auto& [n, x] : v)
    if (n == name) return x;
  return NAN;
}

std::string size_text(std::uintmax_t bytes) {
  return bytes >= (1u << 20) ? fmt::format("{:.1f} MB", double(bytes) / 1e6)
                             : fmt::format("{} KB", bytes / 1000);
}

// Sums of every replica (ReplicaSync), appended values travel with the outputs.
OutputSums reduce(JobRun& run, const Replica& r, const OutputSums& mine, std::vector<double>* extra) {
  std::vector<double> v;
  for (const auto& [n, x] : mine) v.push_back(x);
  const std::size_t n_out = v.size();
  if (extra) v.insert(v.end(), extra->begin(), extra->end());
  if (r.world > 1) v = run.sync.sum(r.local, v);
  OutputSums out = mine;
  for (std::size_t i = 0; i < n_out; ++i) out[i].second = v[i];
  if (extra) std::copy(v.begin() + std::ptrdiff_t(n_out), v.end(), extra->begin());
  return out;
}

// Fault injection for the tests: INCEPT_FAULT_STALL=RANK:ITERATION makes that replica stop
// before the iteration as a stuck host would (alive, heartbeats going, no more steps). It
// waits until the job fails around it (the other replicas' step watch), then ends with the
// job's error; after 10 minutes it gives up.
std::int64_t stall_iteration(int rank) {
  const char* env = std::getenv("INCEPT_FAULT_STALL");
  if (!env) return -1;
  int stall_rank = -1;
  long long iter = -1;
  if (std::sscanf(env, "%d:%lld", &stall_rank, &iter) != 2)
    throw Error(fmt::format("INCEPT_FAULT_STALL={}: expected RANK:ITERATION", env));
  return stall_rank == rank ? iter : -1;
}

void stall(JobRun& run, const Replica& r, std::int64_t it) {
  run.out.warn("rank {}: stalling before iteration {} (INCEPT_FAULT_STALL)", r.rank, it);
  const auto t0 = Clock::now();
  while (!run.sync.aborted() && !(run.nccl && run.nccl->failed()) && since(t0) < 600)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (run.nccl) run.nccl->check();
  throw Error(fmt::format("rank {}: stalled at iteration {} (INCEPT_FAULT_STALL) for {:.0f} s", r.rank, it,
                          since(t0)));
}

}  // namespace

void run_replica(JobRun& run, Replica& r) {
  const JobSetup& j = run.j;
  const SolverSettings& s = j.s;
  const bool leader = r.rank == 0;
  TrainBackend& backend = *r.backend;
  data::BatchLoader& train_loader = *r.train_loader;
  const NetPlan& plan = backend.train_plan();
  TrainResult& result = run.result;
  std::vector<float> params, momentum;
  if (leader) params.resize(plan.param_elems), momentum.resize(plan.param_elems);

  const auto t_run = Clock::now();
  double pause_s = 0, last_val_s = 0;  // validation, snapshots and reports (not training)
  std::int64_t it = run.start_iter;
  std::int64_t last_val_iter = run.last_val_iter;
  auto epoch_of = [&](std::int64_t i) { return double(i) / double(s.train_iter); };
  auto wall = [&]() { return run.wall_before + since(t_run); };
  auto report = [&]() {
    if (!leader) return;
    run.ri.last_snapshot =
        result.last_snapshot.empty() ? "" : fs::path(result.last_snapshot).filename().string();
    try {
      write_report(j.job.string(), run.metrics->points(), run.ri);
    } catch (const Error& e) {
      run.out.warn("could not write the report: {}", e.what());
    }
  };

  auto validate = [&](std::int64_t at) {
    const auto t0 = Clock::now();
    data::BatchLoader& vl = *r.val_loader;
    backend.val_begin();
    vl.start(0);
    for (std::int64_t k = 0; k < vl.batches_per_pass(); ++k) {
      const data::Batch& b = vl.next();
      backend.val_batch(b, [&vl, &b] { vl.release(b); });
    }
    OutputSums sums = reduce(run, r, backend.val_sums(), nullptr);
    for (auto& [name, v] : sums) v /= double(j.n_val);
    last_val_s = since(t0);
    pause_s += last_val_s;
    last_val_iter = at;
    if (!leader) return;
    run.metrics->append({"val", at, epoch_of(at), s.lr.rate(std::min(at, s.max_iter - 1)),
                         double(j.n_val) / std::max(last_val_s, 1e-9), wall(), sums});
    result.final_val = sums;
    run.out.info("validation at epoch {:.2f} (iteration {}, {} images, {:.2f} s): {}", epoch_of(at), at,
                 j.n_val, last_val_s, fmt_means(sums));
    const auto t1 = Clock::now();
    report();
    pause_s += since(t1);
  };

  std::int64_t written_snapshot = -1;
  auto snapshot = [&](std::int64_t at, std::int64_t corrupt) {
    if (!leader) return;
    const auto t0 = Clock::now();
    backend.get_params(params);
    backend.get_momentum(momentum);
    for (float v : params)
      if (!std::isfinite(v))
        throw Error(
            fmt::format("the weights hold NaN/inf at iteration {} (epoch {:.2f}): training diverged; no "
                        "snapshot written. "
                        "Lower the learning rate (--base-lr, now {:g}){}",
                        at, epoch_of(at), s.lr.base_lr,
                        result.last_snapshot.empty()
                            ? ""
                            : fmt::format("; the last good snapshot is {}", result.last_snapshot)));
    const SolverStateInfo info{at,         j.c.seed,    j.ds.train_count, j.n_val, s.batch_size,
                               s.max_iter, j.precision, r.world,          corrupt, wall()};
    const fs::path model = write_snapshot(j.job, j.spec, plan, params, momentum, info, j.c.blob_format);
    result.last_snapshot = model.string();
    written_snapshot = at;
    run.out.info("snapshot {} ({}) at epoch {:.2f}", model.filename().string(),
                 size_text(fs::file_size(model)), epoch_of(at));
    pause_s += since(t0);
  };

  if (r.world > 1) {  // every replica takes part in the timed all-reduces
    const ReduceTiming t = backend.time_grad_reduce(5);
    if (leader && t.buckets > 0)
      run.out.info(
          "gradient all-reduce over {} replicas: {:.1f} MB per step in {} buckets, {:.2f} ms per step "
          "({:.2f} ms "
          "busy) during a {:.2f} ms backward; {:.2f} ms after backward ended ({:.0f} % overlapped)",
          r.world, t.grad_bytes / 1e6, t.buckets, t.allreduce_ms, t.allreduce_busy_ms, t.backward_ms,
          t.exposed_ms,
          t.allreduce_ms > 0 ? 100.0 * (1.0 - std::min(1.0, double(t.exposed_ms) / t.allreduce_ms)) : 100.0);
  }
  const bool validating = r.val_loader && s.test_interval > 0;
  if (validating && it % s.test_interval == 0 && last_val_iter != it) validate(it);

  train_loader.start(it);
  auto t_disp = Clock::now();
  double pause_at_disp = pause_s;
  std::int64_t disp_from = it;
  double rate_steps = 0;  // iterations per second of training
  std::int64_t corrupt = run.corrupt_before, corrupt_reported = run.corrupt_before;
  bool interrupted = false;
  const std::int64_t stall_at = stall_iteration(r.rank);
  while (it < s.max_iter) {
    if (it == stall_at) stall(run, r, it);
    const data::Batch& b = train_loader.next();
    for (int i = 0; i < b.n; ++i)
      if (b.labels[i] < 0 || b.labels[i] >= j.classes)
        throw Error(fmt::format("a training record carries label {} outside labels.txt's {} classes",
                                b.labels[i], j.classes));
    StepValues v;
    v.iteration = std::uint64_t(it);
    v.lr = float(s.lr.rate(it));
    v.momentum = float(s.momentum);
    v.weight_decay = float(s.weight_decay);
    v.grad_scale = 1.f / float(r.world);  // the NCCL sum over the replicas becomes their mean
    backend.train_step(b, v, [&train_loader, &b] { train_loader.release(b); });
    ++it;
    // One replica may stop at any step; several agree at a display (ReplicaSync).
    const bool stop_asked =
        (run.stop && run.stop->load()) || (j.c.stop_at >= 0 && it >= j.c.stop_at && it < s.max_iter);
    const bool display = it % s.display == 0 || it == s.max_iter || (r.world == 1 && stop_asked);
    bool stopping = false;
    if (display) {
      std::vector<double> extra{stop_asked ? 1.0 : 0.0, double(train_loader.corrupt_total())};
      OutputSums sums = reduce(run, r, backend.take_train_sums(), &extra);
      stopping = extra[0] > 0;
      corrupt = run.corrupt_before + std::int64_t(extra[1]);
      const double steps = double(it - disp_from) * r.world;
      for (auto& [name, x] : sums) x /= steps;
      const double dt = since(t_disp) - (pause_s - pause_at_disp);
      const double ips = dt > 0 ? double(it - disp_from) * s.batch_size / dt : 0;
      rate_steps = dt > 0 ? double(it - disp_from) / dt : rate_steps;
      if (leader) run.metrics->append({"train", it, epoch_of(it), s.lr.rate(it - 1), ips, wall(), sums});
      for (const auto& [name, x] : sums)
        if (!std::isfinite(x)) {
          report();
          throw Error(
              fmt::format("{} is {} at iteration {} (epoch {:.2f}): training diverged. Lower the learning "
                          "rate (--base-lr, now "
                          "{:g}) and start again{}",
                          name, x, it, epoch_of(it), s.lr.base_lr,
                          result.last_snapshot.empty()
                              ? ""
                              : fmt::format(", or fine-tune from the last good snapshot {} (--weights)",
                                            result.last_snapshot)));
        }
      if (leader) {
        const std::int64_t vals_left =
            validating ? (s.max_iter - 1) / s.test_interval - (it - 1) / s.test_interval : 0;
        const double eta =
            rate_steps > 0 ? double(s.max_iter - it) / rate_steps + double(vals_left) * last_val_s : 0;
        const double main_loss = value_of(sums, "loss");
        std::string others;
        for (const auto& [name, x] : sums)
          if (name != "loss") others += fmt::format("{}{} {:.3f}", others.empty() ? " (" : ", ", name, x);
        if (!others.empty()) others += ")";
        run.out.info("epoch {:.2f}/{:g} iter {}/{} loss {:.4f}{} lr {:g} {:.0f} img/s ETA {}", epoch_of(it),
                     run.ri.epochs, it, s.max_iter,
                     std::isnan(main_loss) && !sums.empty() ? sums[0].second : main_loss, others,
                     s.lr.rate(it - 1), ips, format_duration(eta));
        if (corrupt > corrupt_reported) {
          const auto ex = train_loader.corrupt_examples();
          run.out.warn("{} corrupt training records skipped so far{}", corrupt,
                       ex.empty() ? "" : fmt::format(" (first: {})", ex.front()));
          corrupt_reported = corrupt;
        }
      }
      t_disp = Clock::now();
      pause_at_disp = pause_s;
      disp_from = it;
    }
    if (stopping) {
      backend.drain();
      run.out.info("stop requested: finishing at iteration {} (epoch {:.2f})", it, epoch_of(it));
      if (written_snapshot != it) snapshot(it, corrupt);
      report();
      interrupted = true;
      break;
    }
    if (validating && it % s.test_interval == 0 && it < s.max_iter) validate(it);
    if (s.snapshot > 0 && it % s.snapshot == 0 && it < s.max_iter) snapshot(it, corrupt);
  }
  backend.drain();
  const double train_s = since(t_run) - pause_s;
  if (!interrupted) {
    if (r.val_loader && last_val_iter != it) validate(it);
    if (written_snapshot != it) snapshot(it, corrupt);
    report();
  }
  if (!leader) return;
  result.finished = !interrupted;
  result.interrupted = interrupted;
  result.iter = it;
  result.train_seconds = run.wall_before + since(t_run);
  result.images_per_second = train_s > 0 ? double(it - run.start_iter) * s.batch_size / train_s : 0;
  result.corrupt_records = corrupt;
}

}  // namespace incept

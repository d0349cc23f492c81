// LR policies, DIGITS' solver arithmetic and the CPU SGD update (solver.h).
#include "engine/solver.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "engine/check.h"
#include "kernels/sgd_ref.h"

namespace incept {
namespace {

constexpr const char* kPolicyNames[] = {"fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid"};

// DIGITS' interval rule for snapshot / test_interval (caffe_train.py).
std::int64_t interval(double epochs_interval, std::int64_t train_iter, std::int64_t max_iter,
                      std::int64_t otherwise) {
  const double v = epochs_interval * double(train_iter);
  if (v > 0 && v <= 1) return 1;
  if (v > 1 && v < double(max_iter)) return std::int64_t(v);
  return otherwise;
}

}  // namespace

const char* lr_policy_name(LrPolicy p) {
  return kPolicyNames[int(p)];
}

LrPolicy parse_lr_policy(const std::string& name) {
  for (int i = 0; i < 7; ++i)
    if (name == kPolicyNames[i]) return LrPolicy(i);
  throw Error(
      fmt::format("unknown learning-rate policy '{}'; use one of fixed, step, multistep, "
                  "exp, inv, poly, sigmoid",
                  name));
}

double LrSchedule::rate(std::int64_t iter) const {
  const double it = double(iter);
  switch (policy) {
    case LrPolicy::kFixed:
      return base_lr;
    case LrPolicy::kStep:
      return base_lr * std::pow(gamma, double(iter / stepsize));
    case LrPolicy::kExp:
      return base_lr * std::pow(gamma, it);
    case LrPolicy::kInv:
      return base_lr * std::pow(1.0 + gamma * it, -power);
    case LrPolicy::kMultiStep: {
      int step = 0;
      while (step < int(stepvalues.size()) && iter >= stepvalues[step]) ++step;
      return base_lr * std::pow(gamma, double(step));
    }
    case LrPolicy::kPoly:
      return base_lr * std::pow(1.0 - it / double(max_iter), power);
    case LrPolicy::kSigmoid:
      return base_lr * (1.0 / (1.0 + std::exp(-gamma * (it - double(stepsize)))));
  }
  return base_lr;
}

std::vector<std::int64_t> SolverSettings::lr_drops() const {
  std::vector<std::int64_t> drops;
  if (lr.policy == LrPolicy::kStep)
    for (std::int64_t it = lr.stepsize; it < max_iter; it += lr.stepsize) drops.push_back(it);
  if (lr.policy == LrPolicy::kMultiStep)
    for (std::int64_t v : lr.stepvalues)
      if (v < max_iter) drops.push_back(v);
  return drops;
}

SolverSettings digits_solver(const DigitsSolverForm& f, std::int64_t n_train, std::int64_t n_val,
                             int net_train_batch, int net_val_batch) {
  SolverSettings s;
  s.batch_size = f.batch_size > 0 ? f.batch_size : (net_train_batch > 0 ? net_train_batch : 16);
  s.val_batch_size = f.val_batch_size > 0 ? f.val_batch_size
                     : f.batch_size > 0   ? f.batch_size
                                          : (net_val_batch > 0 ? net_val_batch : 16);
  s.iter_size = std::max(1, f.iter_size);
  if (n_train <= 0) throw Error("the training set is empty: nothing to train on");
  const std::int64_t per_iter = std::int64_t(s.batch_size) * s.iter_size;
  s.train_iter = (n_train + per_iter - 1) / per_iter;
  s.max_iter = std::int64_t(double(s.train_iter) * f.epochs);
  s.snapshot = interval(f.snapshot_interval, s.train_iter, s.max_iter, 0);
  if (n_val > 0) {
    s.test_iter = (n_val + s.val_batch_size - 1) / s.val_batch_size;
    s.test_interval = interval(f.val_interval, s.train_iter, s.max_iter, s.max_iter);
  }
  s.display = std::max<std::int64_t>(
      1, std::min<std::int64_t>(std::int64_t(std::floor(double(s.max_iter) / (f.epochs * 8))),
                                std::int64_t(std::ceil(5000.0 / double(per_iter)))));
  s.momentum = 0.9;
  s.weight_decay = f.base_lr / 100.0;

  LrSchedule& lr = s.lr;
  lr.policy = f.policy;
  lr.base_lr = f.base_lr;
  lr.max_iter = s.max_iter;
  const double scale = double(s.max_iter) / 100.0;
  auto pick = [](double v, double dflt) { return v >= 0 ? v : dflt; };
  switch (f.policy) {
    case LrPolicy::kFixed:
      break;
    case LrPolicy::kStep:
      lr.stepsize = std::int64_t(std::ceil(pick(f.step_percent, 33) * scale));
      lr.gamma = pick(f.gamma, 0.1);
      break;
    case LrPolicy::kMultiStep: {
      const std::vector<double> pcts =
          f.multistep_percents.empty() ? std::vector<double>{50, 85} : f.multistep_percents;
      for (double p : pcts) lr.stepvalues.push_back(std::int64_t(std::ceil(p * scale)));
      lr.gamma = pick(f.gamma, 0.5);
      break;
    }
    case LrPolicy::kExp:
      lr.gamma = std::pow(pick(f.gamma, 0.95), 1.0 / scale);
      break;
    case LrPolicy::kInv:
      lr.gamma = pick(f.gamma, 0.1) / scale;
      lr.power = pick(f.power, 0.5);
      break;
    case LrPolicy::kPoly:
      lr.power = pick(f.power, 3);
      break;
    case LrPolicy::kSigmoid:
      lr.gamma = -pick(f.gamma, 0.1) / scale;
      lr.stepsize = std::int64_t(std::ceil(pick(f.step_percent, 50) * scale));
      break;
  }
  lr.stepsize = std::max<std::int64_t>(lr.stepsize, 1);
  return s;
}

template <typename T>
void SgdSolver<T>::apply_update() {
  const T lr = T(s_.lr.rate(iter_));
  const T grad_scale = T(1) / T(s_.iter_size);
  const NetPlan& plan = net_.plan();
  for (std::size_t p = 0; p < plan.params.size(); ++p) {
    const ParamPlan& pp = plan.params[p];
    T* g = net_.grad(int(p));
    if (s_.iter_size > 1)
      for (std::int64_t i = 0; i < pp.count; ++i) g[i] *= grad_scale;
    ref::sgd_update<T>(pp.count, lr * T(pp.lr_mult), T(s_.momentum), T(s_.weight_decay * pp.decay_mult),
                       net_.param(int(p)), g, net_.momentum().data() + pp.offset);
  }
}

template class SgdSolver<float>;
template class SgdSolver<double>;

}  // namespace incept

// Caffe's SGD solver as DIGITS configures it: learning-rate policies (fixed, step, multistep,
// exp, inv, poly, sigmoid) with DIGITS' percent-of-training parameters, the epoch ->
// iteration arithmetic DIGITS writes into solver.prototxt, and the momentum/weight-decay
// update over the parameter layout (kernels/sgd_ref.h on the CPU).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/cpu_net.h"

namespace incept {

enum class LrPolicy { kFixed, kStep, kMultiStep, kExp, kInv, kPoly, kSigmoid };
const char* lr_policy_name(LrPolicy p);             // Caffe's string: "fixed", "step", ...
LrPolicy parse_lr_policy(const std::string& name);  // throws Error listing the valid names

// Caffe's SGDSolver::GetLearningRate with solver.prototxt values (already scaled).
struct LrSchedule {
  LrPolicy policy = LrPolicy::kStep;
  double base_lr = 0.01;
  double gamma = 0.1;
  double power = 1.0;
  std::int64_t stepsize = 1;
  std::vector<std::int64_t> stepvalues;
  std::int64_t max_iter = 1;

  double rate(std::int64_t iter) const;
};

// DIGITS' "New image classification model" form (the solver part), with its defaults.
struct DigitsSolverForm {
  double epochs = 30;
  double snapshot_interval = 1;  // epochs
  double val_interval = 1;       // epochs
  int batch_size = 0;            // 0: the train data layer's batch
  int val_batch_size = 0;        // 0: the val data layer's batch (a form batch sets both)
  int iter_size = 1;             // batch accumulation
  double base_lr = 0.01;
  LrPolicy policy = LrPolicy::kStep;
  // Percent-of-training parameters; negative = DIGITS' default for the policy:
  // step 33 % / 0.1; multistep "50,85" / 0.5; exp 0.95; inv 0.1 / 0.5; poly power 3;
  // sigmoid 50 % / 0.1.
  double step_percent = -1, gamma = -1, power = -1;
  std::vector<double> multistep_percents;
};

// What DIGITS writes into solver.prototxt for a dataset of n_train / n_val images.
struct SolverSettings {
  std::int64_t train_iter = 0;     // ceil(n_train / (batch * iter_size)): iterations per epoch
  std::int64_t max_iter = 0;       // train_iter * epochs
  std::int64_t snapshot = 0;       // 0: only the final snapshot
  std::int64_t test_interval = 0;  // 0: no validation set
  std::int64_t test_iter = 0;      // ceil(n_val / val_batch)
  std::int64_t display = 1;
  int batch_size = 0, val_batch_size = 0, iter_size = 1;
  double momentum = 0.9;
  double weight_decay = 0;  // base_lr / 100
  LrSchedule lr;

  // Iterations at which the rate changes (step, multistep) within [1, max_iter).
  std::vector<std::int64_t> lr_drops() const;
};

SolverSettings digits_solver(const DigitsSolverForm& form, std::int64_t n_train, std::int64_t n_val,
                             int net_train_batch, int net_val_batch);

// SGD with momentum over a CpuNet: one step = zero gradients (one fill), iter_size x
// (forward + backward), then for every parameter blob
//   v = momentum * v + lr(iter) * lr_mult * (g / iter_size + weight_decay * decay_mult * w); w -= v
template <typename T>
class SgdSolver {
 public:
  SgdSolver(CpuNet<T>& net, SolverSettings settings) : net_(net), s_(std::move(settings)) {}

  // `load_batch(k)` fills net.data()/labels() for the k-th sub-batch of this step.
  // Returns the mean objective of the step.
  template <typename LoadBatch>
  T step(LoadBatch&& load_batch) {
    net_.zero_grads();
    T loss = 0;
    for (int k = 0; k < s_.iter_size; ++k) {
      load_batch(k);
      loss += net_.forward(std::uint64_t(iter_) * s_.iter_size + k);
      net_.backward();
    }
    apply_update();
    ++iter_;
    return loss / T(s_.iter_size);
  }
  // The update alone, with the gradients already in the net (tests).
  void apply_update();

  std::int64_t iter() const { return iter_; }
  void set_iter(std::int64_t iter) { iter_ = iter; }
  double rate() const { return s_.lr.rate(iter_); }
  const SolverSettings& settings() const { return s_; }

 private:
  CpuNet<T>& net_;
  SolverSettings s_;
  std::int64_t iter_ = 0;
};

extern template class SgdSolver<float>;
extern template class SgdSolver<double>;

}  // namespace incept

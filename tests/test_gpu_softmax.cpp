// The deploy Softmax on the GPU: kernels::softmax_fwd against the CPU reference
// (kernels/softmax_ref.h) in fp32 and bf16 at classifier shapes (2..1001 classes, batches up to
// 130), in place, with poisoned outputs; and a GoogLeNet deploy net (training = false) on
// GpuNet giving the CPU net's probabilities for the same parameters and input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "engine/cpu_net.h"
#include "engine/fillers.h"
#include "engine/gpu_net.h"
#include "gpu_test_data.h"
#include "kernels/softmax_gpu.h"
#include "kernels/softmax_ref.h"
#include "models/models.h"

namespace incept {
namespace {

using namespace gputest;
using testing::rel_error;
using bf16 = __nv_bfloat16;

template <typename T>
void check_softmax(int n, int k, bool in_place) {
  const Nchw s{n, k, 1, 1};
  const auto x =
      rounded<T>(testing::random_floats(std::size_t(s.count()), fresh_seed("softmax x"), -12.f, 12.f));
  // The reference in double: a float CPU softmax over 4096 classes is itself off by ~1e-6.
  std::vector<double> xd(x.begin(), x.end()), refd(x.size());
  ref::softmax_fwd(s, xd.data(), s, refd.data());
  const std::vector<float> ref(refd.begin(), refd.end());
  DeviceBuffer dx = upload<T>(x);
  DeviceBuffer dy = poisoned<T>(x.size());
  T* y = in_place ? dx.as<T>() : dy.as<T>();
  kernels::softmax_fwd<T>(n, k, dx.as<T>(), y, nullptr);
  const auto got = download<T>(in_place ? dx : dy, x.size());
  char what[96];
  std::snprintf(what, sizeof what, "softmax_fwd %s %dx%d%s", name_of<T>(), n, k, in_place ? " in place" : "");
  report(what, rel_error(got, ref), tol<T>(1e-6));
}

TEST(GpuSoftmax, MatchesTheCpuReference) {
  INCEPT_REQUIRE_GPU();
  for (auto [n, k] : {std::pair{1, 10}, {2, 2}, {16, 1000}, {130, 1001}, {3, 33}, {7, 4096}}) {
    check_softmax<float>(n, k, false);
    check_softmax<bf16>(n, k, false);
  }
  check_softmax<float>(64, 1000, true);
  check_softmax<bf16>(64, 1000, true);
}

TEST(GpuSoftmax, GoogLeNetDeployOnTheGpuGivesTheCpuProbabilities) {
  INCEPT_REQUIRE_GPU();
  PlanOptions o;
  o.stage = Stage::kDeploy;
  o.batch = 3;
  o.num_classes = 10;
  const NetPlan plan = plan_net(models::googlenet(), o);
  ASSERT_FALSE(plan.options.training);
  CpuNet<float> cpu(plan);
  cpu.init_params(fresh_seed("googlenet params"));
  // A sharper classifier than the filler gives, so that the probabilities are far from uniform.
  const ParamPlan& cls = plan.params[plan.layers[plan.find_layer("loss3/classifier")].param_ids[0]];
  for (std::int64_t i = 0; i < cls.count; ++i) cpu.params()[std::size_t(cls.offset + i)] *= 40.f;
  const auto x = testing::random_floats(std::size_t(3 * 3 * 224 * 224), fresh_seed("input"), -100.f, 100.f);
  std::copy(x.begin(), x.end(), cpu.data());
  cpu.forward();
  const int prob = plan.blob("softmax");
  const std::vector<float> want(cpu.blob_data(prob), cpu.blob_data(prob) + 30);
  for (const bool channels_last : {false, true}) {
    GpuNetOptions opt;
    opt.channels_last = channels_last;
    GpuNet gpu(plan, opt);
    gpu.set_params(std::vector<float>(cpu.params().begin(), cpu.params().end()));
    gpu.set_input(x);
    gpu.forward_step(StepValues{});
    const std::vector<float> got = gpu.blob_data(prob);
    const double diff = testing::max_abs_diff(got, want);
    std::printf("  GoogLeNet deploy %s: max |gpu - cpu| probability %.3g\n", channels_last ? "NHWC" : "NCHW",
                diff);
    EXPECT_LT(diff, 5e-4);
  }
}

}  // namespace
}  // namespace incept

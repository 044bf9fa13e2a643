// Rectified flow against closed forms: the straight path and its velocity, the time
// shift, logit-normal training times, zero loss for an oracle, and an Euler sampler that
// lands on the data point an oracle velocity describes; the process is chosen by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "diffusion/process.h"
#include "diffusion/rectified_flow.h"

namespace loom::diffusion {
namespace {

RectifiedFlow Make(double shift = 0, int64_t shift_tokens = 256) {
  FlowOptions o;
  o.shift = shift;
  o.shift_tokens = shift_tokens;
  auto f = RectifiedFlow::Create(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *f;
}

// The velocity that carries every x_t to `star` along the straight path: x_t = (1 - t)
// star + t n gives n - star = (x_t - star) / t. The network's time is t * 1000.
Denoiser PointOracle(const torch::Tensor& star) {
  return [star](const torch::Tensor& x, const torch::Tensor& model_t) {
    const torch::Tensor t = (model_t / kFlowModelTime).view({-1, 1, 1, 1});
    return (x - star) / t;
  };
}

TEST(Flow, PathRunsStraightFromDataToNoise) {
  torch::manual_seed(3);
  const RectifiedFlow f = Make();
  const torch::Tensor x0 = torch::randn({3, 1, 4, 4}), noise = torch::randn({3, 1, 4, 4});
  const torch::Tensor t = torch::tensor({0.0f, 0.25f, 1.0f});
  const torch::Tensor x = f.Interpolate(x0, t, noise);
  EXPECT_TRUE(torch::allclose(x[0], x0[0]));
  EXPECT_TRUE(torch::allclose(x[1], 0.75 * x0[1] + 0.25 * noise[1], 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(x[2], noise[2]));
  // The velocity is the path's derivative in t.
  const torch::Tensor h = torch::full({3}, 1e-3f);
  const torch::Tensor slope = (f.Interpolate(x0, t * 0.5 + h, noise) - f.Interpolate(x0, t * 0.5, noise)) / 1e-3;
  EXPECT_TRUE(torch::allclose(slope, f.Target(x0, noise), 1e-2, 1e-2));
}

TEST(Flow, ShiftKeepsTheEndsAndGrowsWithTokens) {
  EXPECT_DOUBLE_EQ(RectifiedFlow::ShiftTime(0.0, 3.0), 0.0);
  EXPECT_DOUBLE_EQ(RectifiedFlow::ShiftTime(1.0, 3.0), 1.0);
  EXPECT_DOUBLE_EQ(RectifiedFlow::ShiftTime(0.3, 1.0), 0.3);
  double last = 0;
  for (double t = 0.05; t < 1; t += 0.05) {
    const double s = RectifiedFlow::ShiftTime(t, 3.0);
    EXPECT_GT(s, t);     // towards noise
    EXPECT_GT(s, last);  // monotone
    last = s;
  }
  const RectifiedFlow f = Make(0, 64);
  EXPECT_DOUBLE_EQ(f.Shift(0), 1.0);
  EXPECT_DOUBLE_EQ(f.Shift(64), 1.0);
  EXPECT_DOUBLE_EQ(f.Shift(256), 2.0);  // four times the tokens: twice the shift
  EXPECT_LT(f.Shift(16), 1.0);
  EXPECT_DOUBLE_EQ(Make(3.0).Shift(1024), 3.0);  // a fixed shift ignores the tokens
}

TEST(Flow, TrainingTimesAreLogitNormalThenShifted) {
  const RectifiedFlow f = Make(0, 100);
  for (const auto& [tokens, median] : std::vector<std::pair<int64_t, double>>{{100, 0.5}, {400, 2.0 / 3.0}}) {
    std::vector<double> ts;
    for (int i = 0; i < 4000; ++i) {
      at::Generator gen = at::detail::createCPUGenerator(SeedFor(5, 0, static_cast<uint64_t>(i)));
      const torch::Tensor t = f.DrawTime(gen, tokens);
      EXPECT_EQ(t.scalar_type(), torch::kFloat32);
      ts.push_back(t.item<double>());
    }
    std::sort(ts.begin(), ts.end());
    EXPECT_GT(ts.front(), 0.0);
    EXPECT_LT(ts.back(), 1.0);
    EXPECT_NEAR(ts[ts.size() / 2], median, 0.02) << tokens << " tokens";
    // logit(t) of the unshifted draws is N(0, 1): about 68% within sigmoid(+-1).
    if (tokens == 100) {
      const auto inside = std::count_if(ts.begin(), ts.end(), [](double t) {
        return t > 1 / (1 + std::exp(1.0)) && t < 1 / (1 + std::exp(-1.0));
      });
      EXPECT_NEAR(static_cast<double>(inside) / ts.size(), 0.683, 0.03);
    }
  }
}

TEST(Flow, AnOracleHasNoLossAndItsSamplesLandOnItsPoint) {
  torch::manual_seed(8);
  const RectifiedFlow f = Make();
  const torch::Tensor star = torch::rand({1, 1, 4, 4}) * 1.6 - 0.8;
  const torch::Tensor x0 = star.expand({5, 1, 4, 4}).contiguous(), noise = torch::randn({5, 1, 4, 4});
  const torch::Tensor t = torch::tensor({0.1f, 0.3f, 0.5f, 0.7f, 0.95f});
  EXPECT_LT(f.training_losses(PointOracle(star), x0, t, noise).max().item<double>(), 1e-10);
  // A wrong velocity costs what the closed form says: mean of (v - target)^2.
  const Denoiser zero = [](const torch::Tensor& x, const torch::Tensor&) { return torch::zeros_like(x); };
  const torch::Tensor expected = (noise - x0).pow(2).flatten(1).mean(1);
  EXPECT_TRUE(torch::allclose(f.training_losses(zero, x0, t, noise), expected, 1e-5, 1e-6));
  for (int steps : {1, 4, 25}) {
    for (int64_t tokens : {0, 1024}) {
      const torch::Tensor x = f.Sample(PointOracle(star), torch::randn({3, 1, 4, 4}),
                                       {.steps = steps, .clip_x0 = false, .tokens = tokens});
      EXPECT_TRUE(torch::allclose(x, star.expand({3, 1, 4, 4}), 1e-4, 1e-4)) << steps << " steps";
    }
  }
  // With clip_x0 the implied clean sample is clamped: an oracle of a point outside
  // [-1, 1] lands on the clamped point.
  const torch::Tensor far = torch::full({1, 1, 4, 4}, 3.0f);
  const torch::Tensor clipped = f.Sample(PointOracle(far), torch::randn({2, 1, 4, 4}), {.steps = 10});
  EXPECT_TRUE(torch::allclose(clipped, torch::ones({2, 1, 4, 4}), 1e-5, 1e-5));
}

TEST(Process, IsChosenByName) {
  DiffusionOptions o;
  auto g = MakeProcess(o);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->name(), "gaussian");
  EXPECT_EQ((*g)->time_dtype(), torch::kLong);
  o.process = "flow";
  auto f = MakeProcess(o);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->name(), "flow");
  o.process = "sde";
  const auto bad = MakeProcess(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gaussian or flow"), std::string::npos) << bad.status();
  o.process = "flow";
  o.flow.logit_std = 0;
  EXPECT_FALSE(MakeProcess(o).ok());
}

}  // namespace
}  // namespace loom::diffusion

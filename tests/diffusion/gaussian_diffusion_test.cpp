// Gaussian diffusion against closed forms: schedules, the forward process, targets and
// their inversions, min-SNR weights, zero loss for an oracle, and samplers that land on
// the data point an oracle denoiser describes.
#include <gtest/gtest.h>

#include "diffusion/gaussian_diffusion.h"

namespace loom::diffusion {
namespace {

GaussianDiffusion Make(const std::string& schedule, const std::string& prediction,
                       const std::string& weight = "uniform", int timesteps = 1000) {
  DiffusionOptions o;
  o.schedule = schedule;
  o.prediction = prediction;
  o.loss_weight = weight;
  o.timesteps = timesteps;
  auto d = GaussianDiffusion::Create(o);
  EXPECT_TRUE(d.ok()) << d.status();
  return *d;
}

TEST(Schedule, AlphaBarsDecreaseInsideTheUnitInterval) {
  for (const char* s : {"linear", "cosine"}) {
    for (int T : {10, 1000}) {
      auto abar = AlphasCumprod(s, T);
      ASSERT_TRUE(abar.ok());
      EXPECT_EQ(abar->size(0), T);
      EXPECT_LT(abar->max().item<double>(), 1.0);
      EXPECT_GT(abar->min().item<double>(), 0.0);
      EXPECT_TRUE((abar->slice(0, 1) < abar->slice(0, 0, T - 1)).all().item<bool>()) << s;
    }
  }
  // Cosine: abar_t = f(t+1)/f(0), f(t) = cos^2(((t/T)+s)/(1+s) pi/2), away from the cap.
  auto abar = *AlphasCumprod("cosine", 1000);
  const auto f = [](double t) {
    const double c = std::cos((t / 1000 + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  EXPECT_NEAR(abar[499].item<double>(), f(500) / f(0), 1e-9);
  // Linear at T = 1000: the first beta is 1e-4.
  EXPECT_NEAR((*AlphasCumprod("linear", 1000))[0].item<double>(), 1 - 1e-4, 1e-12);
  EXPECT_FALSE(AlphasCumprod("quadratic", 10).ok());
}

TEST(Forward, QSampleMatchesTheClosedForm) {
  torch::manual_seed(11);
  auto d = Make("cosine", "eps");
  const torch::Tensor x0 = torch::randn({4, 1, 3, 3});
  const torch::Tensor noise = torch::randn({4, 1, 3, 3});
  const torch::Tensor t = torch::tensor({0, 10, 500, 999}, torch::kLong);
  const torch::Tensor x = d.q_sample(x0, t, noise);
  for (int i = 0; i < 4; ++i) {
    const double a = d.alphas_cumprod()[t[i].item<int64_t>()].item<double>();
    EXPECT_TRUE(torch::allclose(x[i], std::sqrt(a) * x0[i] + std::sqrt(1 - a) * noise[i], 1e-5, 1e-5));
  }
}

TEST(Objective, TargetsInvertBackToX0AndNoise) {
  torch::manual_seed(11);
  for (const char* p : {"eps", "v", "x0"}) {
    auto d = Make("cosine", p);
    const torch::Tensor x0 = torch::randn({5, 2, 4, 4});
    const torch::Tensor noise = torch::randn({5, 2, 4, 4});
    const torch::Tensor t = torch::tensor({1, 100, 400, 700, 990}, torch::kLong);
    torch::Tensor rx0, reps;
    d.Interpret(d.q_sample(x0, t, noise), t, d.Target(x0, t, noise), &rx0, &reps);
    EXPECT_TRUE(torch::allclose(rx0, x0, 1e-3, 1e-3)) << p;
    EXPECT_TRUE(torch::allclose(reps, noise, 1e-3, 1e-3)) << p;
  }
}

TEST(Objective, OracleHasZeroLossAndWrongModelDoesNot) {
  torch::manual_seed(11);
  for (const char* p : {"eps", "v", "x0"}) {
    auto d = Make("linear", p, "min_snr");
    const torch::Tensor x0 = torch::randn({6, 3});
    const torch::Tensor noise = torch::randn({6, 3});
    const torch::Tensor t = torch::randint(0, 1000, {6}, torch::kLong);
    const Denoiser oracle = [&](const torch::Tensor&, const torch::Tensor& tt) { return d.Target(x0, tt, noise); };
    EXPECT_LT(d.training_losses(oracle, x0, t, noise).abs().max().item<float>(), 1e-10) << p;
    const Denoiser zero = [&](const torch::Tensor& x, const torch::Tensor&) { return torch::zeros_like(x); };
    EXPECT_GT(d.training_losses(zero, x0, t, noise).min().item<float>(), 0.0f) << p;
  }
}

TEST(Objective, MinSnrWeightsFollowTheirDefinition) {
  const torch::Tensor t = torch::tensor({0, 50, 300, 900}, torch::kLong);
  const auto abar = *AlphasCumprod("cosine", 1000);
  for (const char* p : {"eps", "v", "x0"}) {
    auto d = Make("cosine", p, "min_snr");
    const torch::Tensor w = d.LossWeight(t);
    for (int i = 0; i < 4; ++i) {
      const double a = abar[t[i].item<int64_t>()].item<double>();
      const double snr = a / (1 - a);
      double want = std::min(snr, 5.0);
      if (std::string(p) == "eps") want /= snr;
      if (std::string(p) == "v") want /= snr + 1;
      EXPECT_NEAR(w[i].item<float>(), want, 1e-5 * std::max(1.0, want)) << p << " t=" << t[i].item<int64_t>();
    }
  }
  EXPECT_TRUE(torch::equal(Make("cosine", "v", "uniform").LossWeight(t), torch::ones({4})));
}

// A denoiser that knows the data is one point x*: its exact prediction at (x_t, t).
Denoiser PointOracle(const GaussianDiffusion& d, const torch::Tensor& star) {
  return [&d, star](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor x0 = star.expand_as(x);
    const auto abar = d.alphas_cumprod().index_select(0, t).to(torch::kFloat32).view({-1, 1, 1, 1});
    const torch::Tensor eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt();
    return d.Target(x0, t, eps);
  };
}

TEST(Sampler, DdimAndDdpmReachTheOraclesPointAtAnyStepCount) {
  torch::manual_seed(11);
  for (const char* p : {"eps", "v", "x0"}) {
    auto d = Make("cosine", p);
    const torch::Tensor star = torch::rand({1, 1, 4, 4}) * 1.6 - 0.8;
    const torch::Tensor noise = torch::randn({3, 1, 4, 4});
    for (int steps : {1, 10, 50}) {
      // One step from t = T-1 asks eps prediction to divide by sqrt(abar) ~ 1e-4 in
      // float32, which is why v prediction exists; eps needs a few steps.
      if (steps == 1 && std::string(p) == "eps") continue;
      const torch::Tensor ddim = d.Sample(PointOracle(d, star), noise, {.steps = steps});
      EXPECT_TRUE(torch::allclose(ddim, star.expand_as(ddim), 1e-3, 1e-3))
          << p << " steps " << steps << " max error " << (ddim - star).abs().max().item<float>();
    }
    torch::Generator gen = at::detail::createCPUGenerator(7);
    const torch::Tensor ddpm = d.Sample(PointOracle(d, star), noise, {.steps = 25, .eta = 1.0}, &gen);
    EXPECT_TRUE(torch::allclose(ddpm, star.expand_as(ddpm), 1e-3, 1e-3))
        << p << " max error " << (ddpm - star).abs().max().item<float>();
  }
}

TEST(Sampler, DdimIsDeterministicAndDdpmFollowsItsGenerator) {
  torch::manual_seed(11);
  auto d = Make("cosine", "v");
  const Denoiser model = [](const torch::Tensor& x, const torch::Tensor& t) { return 0.1 * x; };
  const torch::Tensor noise = torch::randn({2, 1, 3, 3});
  EXPECT_TRUE(torch::equal(d.Sample(model, noise, {.steps = 20}), d.Sample(model, noise, {.steps = 20})));
  torch::Generator g1 = at::detail::createCPUGenerator(5), g2 = at::detail::createCPUGenerator(5);
  EXPECT_TRUE(torch::equal(d.Sample(model, noise, {.steps = 20, .eta = 1}, &g1),
                           d.Sample(model, noise, {.steps = 20, .eta = 1}, &g2)));
}

TEST(Thresholding, DynamicRescalesByTheQuantileOfEachSampleAndLeavesInRangeSamplesAlone) {
  // Row 0 within [-1, 1]: s = 1, unchanged. Row 1: |x| = 0.5, 1, ..., 4 (8 values); the
  // 0.9-quantile by linear interpolation between order statistics is 3.65.
  const torch::Tensor in_range = torch::linspace(-1, 1, 8).view({1, 1, 2, 4});
  const torch::Tensor wide = (torch::arange(1, 9, torch::kFloat32) * 0.5 *
                              torch::tensor({1, -1, 1, -1, 1, -1, 1, -1}, torch::kFloat32)).view({1, 1, 2, 4});
  const torch::Tensor out = DynamicThreshold(torch::cat({in_range, wide}), 0.9);
  EXPECT_TRUE(torch::allclose(out[0], in_range[0]));
  const double s = 3.5 + 0.3 * 0.5;  // position 0.9 * 7 = 6.3 between 3.5 and 4.0
  EXPECT_TRUE(torch::allclose(out[1], wide[0].clamp(-s, s) / s, 1e-6, 1e-6)) << out[1];
  EXPECT_LE(out.abs().max().item<double>(), 1.0);
}

TEST(Thresholding, DynamicKeepsTheShapeOfAnOutOfRangeTargetWhereTheStaticClipFlattensIt) {
  // An oracle that points at values in [-2, 2]: the static clip saturates everything
  // beyond 1; dynamic thresholding at p = 1 lands on the target scaled by 1/2.
  auto d = Make("cosine", "v");
  const torch::Tensor star = torch::linspace(-2, 2, 16).view({1, 1, 4, 4});
  const torch::Tensor noise = torch::randn({2, 1, 4, 4});
  const torch::Tensor clipped = d.Sample(PointOracle(d, star), noise, {.steps = 50});
  const torch::Tensor dynamic = d.Sample(PointOracle(d, star), noise, {.steps = 50, .dynamic_threshold = 1.0});
  EXPECT_TRUE(torch::allclose(dynamic, (star / 2).expand_as(dynamic), 1e-3, 1e-3)) << dynamic;
  EXPECT_TRUE(torch::allclose(clipped, star.clamp(-1, 1).expand_as(clipped), 1e-3, 1e-3)) << clipped;
}

TEST(Guidance, CombinesConditionalAndUnconditional) {
  const Denoiser cond = [](const torch::Tensor& x, const torch::Tensor&) { return torch::full_like(x, 3.0); };
  const Denoiser uncond = [](const torch::Tensor& x, const torch::Tensor&) { return torch::full_like(x, 1.0); };
  const torch::Tensor x = torch::zeros({2, 2});
  const torch::Tensor t = torch::zeros({2}, torch::kLong);
  EXPECT_TRUE(torch::allclose(Guided(cond, uncond, 4.0)(x, t), torch::full({2, 2}, 9.0)));
  EXPECT_TRUE(torch::allclose(Guided(cond, uncond, 1.0)(x, t), cond(x, t)));
  EXPECT_TRUE(torch::allclose(Guided(cond, uncond, 0.0)(x, t), uncond(x, t)));
}

}  // namespace
}  // namespace loom::diffusion

// PSNR and SSIM of reconstructions: the closed forms on known images, the 8-bit rounding
// the definition asks for, and SSIM's response to what it measures (structure, not just
// error).
#include <gtest/gtest.h>

#include <cmath>

#include "eval/reconstruction.h"

namespace loom::eval {
namespace {

TEST(Psnr, IsTenLogOfOneOverTheMeanSquaredErrorOfEightBitImages) {
  // A uniform offset of 4 levels out of 255: MSE = (4/255)^2, PSNR = 20 log10(255/4).
  const torch::Tensor real = torch::zeros({2, 1, 16, 16});          // level 127.5 -> 128 after rounding
  const torch::Tensor fake = real + 4.2 / 127.5;                   // 131.7 -> 132: 4 levels up
  const torch::Tensor p = Psnr(real, fake);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(p[0].item<double>(), 20 * std::log10(255.0 / 4.0), 1e-9);
  // Differences below half a level vanish in the 8-bit picture: identical, infinite.
  EXPECT_TRUE(std::isinf(Psnr(real, real + 0.1 / 127.5)[0].item<double>()));
  // Values outside [-1, 1] are clipped as an 8-bit picture clips them.
  EXPECT_TRUE(std::isinf(Psnr(torch::ones({1, 1, 4, 4}), torch::full({1, 1, 4, 4}, 3.0))[0].item<double>()));
}

TEST(Ssim, IsOneForIdenticalImagesAndFallsWithStructureLoss) {
  torch::manual_seed(3);
  const torch::Tensor real = torch::rand({3, 1, 32, 32}) * 2 - 1;
  const torch::Tensor same = Ssim(real, real);
  EXPECT_NEAR(same.min().item<double>(), 1.0, 1e-12);
  // The same mean squared error spread as noise or as a uniform shift: the shift keeps
  // the structure, so it scores far higher.
  const torch::Tensor noise = torch::randn_like(real) * 0.4;
  const double shift = noise.pow(2).mean().sqrt().item<double>();
  const double noisy = Ssim(real, real + noise).mean().item<double>();
  const double shifted = Ssim(real, (real + shift).clamp(-1, 1)).mean().item<double>();
  EXPECT_LT(noisy, 0.95);
  EXPECT_GT(shifted, noisy);
  // A constant image against a textured one: no shared structure.
  EXPECT_LT(Ssim(real, torch::zeros_like(real)).mean().item<double>(), 0.1);
}

TEST(Ssim, MatchesTheDefinitionOnOneWindow) {
  // An 11x11 image has one valid window: SSIM is the formula on its Gaussian-weighted
  // moments, computed here independently.
  torch::manual_seed(5);
  const torch::Tensor a = torch::rand({1, 1, 11, 11}) * 2 - 1, b = torch::rand({1, 1, 11, 11}) * 2 - 1;
  const auto to01 = [](const torch::Tensor& t) {
    return ((t.to(torch::kFloat64) + 1) * 127.5).round().clamp(0, 255) / 255.0;
  };
  const torch::Tensor x = to01(a)[0][0], y = to01(b)[0][0];
  torch::Tensor g = torch::exp(-torch::arange(-5, 6, torch::kFloat64).pow(2) / 4.5);
  g = g / g.sum();
  const torch::Tensor w = torch::outer(g, g);
  const double mx = (w * x).sum().item<double>(), my = (w * y).sum().item<double>();
  const double vx = (w * x * x).sum().item<double>() - mx * mx, vy = (w * y * y).sum().item<double>() - my * my;
  const double cxy = (w * x * y).sum().item<double>() - mx * my;
  const double c1 = 1e-4, c2 = 9e-4;
  const double want = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
  EXPECT_NEAR(Ssim(a, b)[0].item<double>(), want, 1e-12);
}

}  // namespace
}  // namespace loom::eval

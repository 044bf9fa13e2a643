// Fréchet distance against closed forms: identical sets give 0, diagonal Gaussians give
// |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2, and the distance is symmetric.
#include "eval/frechet.h"

#include <gtest/gtest.h>

namespace loom::eval {
namespace {

FeatureStats Diagonal(std::vector<double> mean, std::vector<double> var) {
  FeatureStats s;
  s.mean = torch::tensor(mean, torch::kFloat64);
  s.cov = torch::diag(torch::tensor(var, torch::kFloat64));
  s.count = 100;
  return s;
}

TEST(Frechet, IdenticalSetsAreAtDistanceZero) {
  torch::manual_seed(0);
  const FeatureStats s = Stats(torch::randn({500, 16}));
  EXPECT_NEAR(FrechetDistance(s, s), 0.0, 1e-9);
}

TEST(Frechet, DiagonalGaussiansMatchTheClosedForm) {
  const FeatureStats a = Diagonal({0, 1, 2}, {1, 4, 9}), b = Diagonal({1, 1, 0}, {4, 1, 1});
  const double want = (1 + 0 + 4) + (1 - 2) * (1 - 2) + (2 - 1) * (2 - 1) + (3 - 1) * (3 - 1);
  EXPECT_NEAR(FrechetDistance(a, b), want, 1e-9);
  EXPECT_NEAR(FrechetDistance(b, a), want, 1e-9);
}

TEST(Frechet, RotatedCovariancesMatchTheClosedForm) {
  // Commuting covariances (same eigenvectors): the distance is that of their spectra.
  const torch::Tensor q = std::get<0>(torch::linalg_qr(torch::randn({4, 4}, torch::kFloat64)));
  const FeatureStats a = Diagonal({0, 0, 0, 0}, {1, 2, 3, 4}), b = Diagonal({0, 0, 0, 0}, {4, 3, 2, 1});
  FeatureStats ra = a, rb = b;
  ra.cov = q.matmul(a.cov).matmul(q.t());
  rb.cov = q.matmul(b.cov).matmul(q.t());
  EXPECT_NEAR(FrechetDistance(ra, rb), FrechetDistance(a, b), 1e-9);
}

TEST(Frechet, StatsAreTheUnbiasedMeanAndCovariance) {
  const torch::Tensor f = torch::tensor({{1.0, 2.0}, {3.0, 6.0}, {5.0, 10.0}}, torch::kFloat64);
  const FeatureStats s = Stats(f);
  EXPECT_NEAR(s.mean[0].item<double>(), 3.0, 1e-12);
  EXPECT_NEAR(s.cov[0][0].item<double>(), 4.0, 1e-12);
  EXPECT_NEAR(s.cov[0][1].item<double>(), 8.0, 1e-12);
  EXPECT_NEAR(s.cov[1][1].item<double>(), 16.0, 1e-12);
}

}  // namespace
}  // namespace loom::eval

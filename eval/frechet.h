// Fréchet distance between two sets of feature vectors, each summarised by its mean and
// covariance (the Gaussian fit that FID uses):
//   d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))
// computed in float64 with symmetric eigendecompositions (no general matrix square root).
#pragma once

#include <torch/torch.h>

namespace loom::eval {

struct FeatureStats {
  torch::Tensor mean;  // float64 [D]
  torch::Tensor cov;   // float64 [D, D], unbiased
  int64_t count = 0;
};

// Statistics of features [N, D] (N >= 2).
FeatureStats Stats(const torch::Tensor& features);

// The squared Fréchet distance between the Gaussian fits of two feature sets.
double FrechetDistance(const FeatureStats& a, const FeatureStats& b);

}  // namespace loom::eval

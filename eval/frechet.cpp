// Fréchet distance (see frechet.h).
#include "eval/frechet.h"

namespace loom::eval {
namespace {

// The square root of a symmetric positive semi-definite matrix (negative eigenvalues
// from rounding are clamped to zero).
torch::Tensor SqrtPsd(const torch::Tensor& m) {
  auto [values, vectors] = torch::linalg_eigh(m);
  return vectors.matmul(torch::diag(values.clamp_min(0).sqrt())).matmul(vectors.transpose(0, 1));
}

}  // namespace

FeatureStats Stats(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 2 && features.size(0) >= 2, "Stats needs features [N >= 2, D]");
  const torch::Tensor f = features.to(torch::kFloat64);
  FeatureStats s;
  s.count = f.size(0);
  s.mean = f.mean(0);
  const torch::Tensor centred = f - s.mean;
  s.cov = centred.transpose(0, 1).matmul(centred) / static_cast<double>(s.count - 1);
  return s;
}

double FrechetDistance(const FeatureStats& a, const FeatureStats& b) {
  TORCH_CHECK(a.mean.sizes() == b.mean.sizes(), "feature dimensions differ");
  // tr((S_a S_b)^(1/2)) = tr((R S_b R)^(1/2)) with R = S_a^(1/2); R S_b R is symmetric PSD.
  const torch::Tensor r = SqrtPsd(a.cov);
  const torch::Tensor inner = r.matmul(b.cov).matmul(r);
  const torch::Tensor symmetric = (inner + inner.transpose(0, 1)) / 2;
  const double cross = torch::linalg_eigvalsh(symmetric).clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (a.mean - b.mean).pow(2).sum().item<double>();
  return mean_term + a.cov.trace().item<double>() + b.cov.trace().item<double>() - 2 * cross;
}

}  // namespace loom::eval

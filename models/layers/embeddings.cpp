// Timestep, patch and position embeddings (see embeddings.h).
#include "models/layers/embeddings.h"

#include <cmath>

namespace loom::models {

torch::Tensor TimestepSinusoids(const torch::Tensor& t, int64_t dim, double max_period) {
  const int64_t half = dim / 2;
  const auto opts = torch::TensorOptions(torch::kFloat32).device(t.device());
  const torch::Tensor freqs = torch::exp(-std::log(max_period) * torch::arange(half, opts) / half);  // [half]
  const torch::Tensor args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);            // [B, half]
  torch::Tensor emb = torch::cat({torch::cos(args), torch::sin(args)}, 1);                       // [B, 2*half]
  if (dim % 2) emb = torch::cat({emb, torch::zeros({t.size(0), 1}, opts)}, 1);
  return emb;
}

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t width, int64_t frequency_dim)
    : frequency_dim(frequency_dim) {
  mlp = register_module("mlp", torch::nn::Sequential(torch::nn::Linear(frequency_dim, width),
                                                     torch::nn::SiLU(),
                                                     torch::nn::Linear(width, width)));
}

torch::Tensor TimestepEmbedderImpl::forward(const torch::Tensor& t) {
  return mlp->forward(TimestepSinusoids(t, frequency_dim));  // [B, width]
}

torch::Tensor SinCosPositions2d(int64_t dim, int64_t grid) {
  TORCH_CHECK(dim % 4 == 0, "2-D sin-cos positions need a width divisible by 4, got ", dim);
  const torch::Tensor coords = torch::arange(grid, torch::kFloat32);
  const torch::Tensor yy = coords.view({grid, 1}).expand({grid, grid}).reshape({-1});  // [G*G]
  const torch::Tensor xx = coords.view({1, grid}).expand({grid, grid}).reshape({-1});  // [G*G]
  const int64_t quarter = dim / 4;
  const torch::Tensor omega = 1.0 / torch::pow(10000.0, torch::arange(quarter, torch::kFloat32) / quarter);
  const auto axis = [&](const torch::Tensor& pos) {
    const torch::Tensor a = pos.unsqueeze(1) * omega.unsqueeze(0);  // [G*G, dim/4]
    return torch::cat({torch::sin(a), torch::cos(a)}, 1);           // [G*G, dim/2]
  };
  return torch::cat({axis(yy), axis(xx)}, 1);  // [G*G, dim]
}

PatchEmbedImpl::PatchEmbedImpl(int64_t channels, int64_t width, int64_t patch) {
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, width, patch).stride(patch)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x) {
  return proj->forward(x).flatten(2).transpose(1, 2);  // [B, width, H/p, W/p] -> [B, N, width]
}

torch::Tensor Unpatchify(const torch::Tensor& tokens, int64_t channels, int64_t patch, int64_t height,
                         int64_t width) {
  const int64_t B = tokens.size(0), gh = height / patch, gw = width / patch;
  return tokens.view({B, gh, gw, patch, patch, channels})  // [B, gh, gw, p, p, C]
      .permute({0, 5, 1, 3, 2, 4})                        // [B, C, gh, p, gw, p]
      .reshape({B, channels, height, width});             // [B, C, H, W]
}

}  // namespace loom::models

// Embeddings shared by the models: sinusoidal timestep embedding with an MLP (DiT's
// t_embedder), patch embedding and its inverse, and fixed 2-D sin-cos positions.
#pragma once

#include <torch/torch.h>

namespace loom::models {

// [B] timesteps -> [B, dim] sinusoids (cos | sin), frequencies from 1 to 1/max_period.
torch::Tensor TimestepSinusoids(const torch::Tensor& t, int64_t dim, double max_period = 10000);

class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  TimestepEmbedderImpl(int64_t width, int64_t frequency_dim = 256);
  torch::Tensor forward(const torch::Tensor& t);  // [B] -> [B, width]
  int64_t frequency_dim;
  torch::nn::Sequential mlp{nullptr};
};
TORCH_MODULE(TimestepEmbedder);

// [H*W/p^2, dim] fixed 2-D sin-cos positions for a grid of `grid` x `grid` patches.
torch::Tensor SinCosPositions2d(int64_t dim, int64_t grid);

class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t channels, int64_t width, int64_t patch);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, H*W/p^2, width]
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// [B, N, p*p*C] tokens -> [B, C, H, W] image, N = (H/p) * (W/p), row-major patches.
torch::Tensor Unpatchify(const torch::Tensor& tokens, int64_t channels, int64_t patch, int64_t height,
                         int64_t width);

}  // namespace loom::models

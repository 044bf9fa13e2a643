// Convolutional blocks of latent diffusion's autoencoder (and of U-Nets): a ResNet block
// of two GroupNorm-swish-3x3 convolutions with a 1x1 shortcut when the width changes,
// single-head self-attention over the pixels, and 2x down- and up-sampling. Names follow
// latent diffusion's modules, so weights map one to one. Blocks are Units
// (core/unit.h): ZeRO-3 shards and gathers them one at a time.
#pragma once

#include <torch/torch.h>

#include "core/unit.h"

namespace loom::models {

// GroupNorm with eps 1e-6 (latent diffusion's Normalize).
torch::nn::GroupNorm Normalize(int64_t channels, int64_t groups);

class ResnetBlockImpl : public torch::nn::Module, public Unit {
 public:
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups, double dropout);
  torch::Tensor forward(const torch::Tensor& x);  // [B, Cin, H, W] -> [B, Cout, H, W]

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
  torch::nn::Dropout dropout{nullptr};

 private:
  torch::Tensor Body(const torch::Tensor& x);
};
TORCH_MODULE(ResnetBlock);

// Self-attention over the H*W positions, one head of width C, with a residual.
class AttnBlockImpl : public torch::nn::Module, public Unit {
 public:
  AttnBlockImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> same

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};

 private:
  torch::Tensor Body(const torch::Tensor& x);
};
TORCH_MODULE(AttnBlock);

// A 3x3 convolution of stride 2, padded on the bottom and right only (H, W -> H/2, W/2).
class DownsampleImpl : public torch::nn::Module {
 public:
  explicit DownsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest-neighbour 2x upsampling, then a 3x3 convolution.
class UpsampleImpl : public torch::nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// FLOPs (2 per multiply-add) of a k x k convolution producing [cout, h, w] per sample.
inline double ConvFlops(int64_t cin, int64_t cout, int64_t k, int64_t h, int64_t w) {
  return 2.0 * static_cast<double>(cin * cout * k * k * h * w);
}

}  // namespace loom::models

// The KL-regularised autoencoder of latent diffusion (AutoencoderKL): a ResNet encoder
// to a diagonal Gaussian over latents of z_channels at 1/f of the image side (f = 2 to
// the number of levels minus one), and a decoder back. Attention only in the middle
// blocks. Module names follow latent diffusion's, so weights map one to one.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "models/layers/resnet.h"
#include "models/options.h"

namespace loom::models {

// The encoder or decoder's middle: ResNet block, attention (optional), ResNet block.
class MidBlockImpl : public torch::nn::Module {
 public:
  MidBlockImpl(int64_t channels, int64_t groups, double dropout, bool attention);
  torch::Tensor forward(const torch::Tensor& x);
  ResnetBlock block_1{nullptr}, block_2{nullptr};
  AttnBlock attn_1{nullptr};
};
TORCH_MODULE(MidBlock);

class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const VaeOptions& options, int64_t in_channels);
  // [B, C, H, W] in [-1, 1] -> posterior moments [B, 2z, H/f, W/f] (before quant_conv).
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};  // per level: {block: ResnetBlocks, downsample}
  MidBlock mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Encoder);

class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const VaeOptions& options, int64_t out_channels);
  // [B, z, h, w] -> images [B, C, h*f, w*f].
  torch::Tensor forward(const torch::Tensor& z);

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  MidBlock mid{nullptr};
  torch::nn::ModuleList up{nullptr};  // per level, up[0] at full resolution
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Decoder);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  AutoencoderKLImpl(const VaeOptions& options, int64_t channels);
  // Posterior moments [B, 2z, h, w]: mean and log-variance stacked on the channels.
  torch::Tensor encode(const torch::Tensor& x);
  // Images of latents [B, z, h, w] (not clamped).
  torch::Tensor decode(const torch::Tensor& z);

  VaeOptions options;
  int64_t channels;
  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

// Checks the options against images of `size`: channel counts divisible by the norm
// groups, the side divisible by f.
absl::Status CheckVae(const VaeOptions& options, int64_t size);
// The downsampling factor f.
int64_t VaeFactor(const VaeOptions& options);
// FLOPs of one encode + decode of one image of `size` (convolutions and attention).
double VaeForwardFlops(const VaeOptions& options, int64_t channels, int64_t size);

// Latent diffusion's patch discriminator (NLayerDiscriminator): 4x4 convolutions of
// stride 2 with batch norm and leaky ReLU, ending in one logit per patch.
class PatchDiscriminatorImpl : public torch::nn::Module {
 public:
  PatchDiscriminatorImpl(int64_t in_channels, int64_t width, int64_t layers);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> logits [B, 1, h, w]
  torch::nn::Sequential main{nullptr};
};
TORCH_MODULE(PatchDiscriminator);

}  // namespace loom::models

// The U-Net of latent diffusion (Rombach et al., after openaimodel's UNetModel): ResBlocks
// conditioned on the timestep embedding, channel_mult levels with num_res_blocks each,
// down- and up-sampling with skip connections, and at the downsampling factors named in
// attention_resolutions a spatial transformer (self-attention, cross-attention to the
// text tokens, GEGLU feed-forward). For the families that reuse it: extra input channels
// (a low-resolution image for super-resolution), and an embedding vector (a CLIP image
// embedding for the unCLIP decoder) added to the timestep embedding and, optionally,
// turned into extra context tokens. Sizes are registered by name.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "core/unit.h"
#include "models/layers/attention.h"
#include "models/options.h"

namespace loom::models {

struct UNetConfig {
  int64_t in_channels = 4;   // of x_t (plus extra_in_channels concatenated by the caller)
  int64_t out_channels = 4;
  int64_t model_channels = 64;
  std::vector<int64_t> channel_mult{1, 2, 2};
  int64_t num_res_blocks = 1;
  std::vector<int64_t> attention_resolutions{2, 4};  // downsampling factors with a transformer
  int64_t heads = 4;
  int64_t transformer_depth = 1;
  int64_t groups = 32;
  double dropout = 0;
  int64_t context_dim = 256;  // width of the text tokens
  int64_t embed_dim = 0;      // an extra conditioning vector; 0 = none
  int64_t embed_tokens = 0;   // context tokens made from it (0 = added to the timestep embedding only)
  // A second timestep, embedded like t by its own MLP and added: the noise-augmentation
  // level of a super-resolution stage's low-resolution input (Imagen, SR3).
  bool aug_embed = false;
};

// Resolves model.size or the spelled-out numbers (UNetOptions) into a UNetConfig.
absl::StatusOr<UNetConfig> ResolveUNet(const UNetOptions& model, int64_t in_channels, int64_t out_channels,
                                       int64_t image_size, int64_t context_dim);
std::vector<std::string> UNetSizes();

// The U-Net's paths as a list of steps, from which the network is built and its FLOPs
// counted. Every input step's output (and conv_in's) is kept as a skip; every output
// step's ResBlock takes the last skip kept, concatenated, as part of `in`.
struct UNetStepPlan {
  int64_t in = 0;    // ResBlock input channels
  int64_t out = 0;   // ResBlock output channels; 0: no ResBlock (a downsampler of `in`)
  bool attn = false; // a spatial transformer after the ResBlock
  bool down = false; // a stride-2 convolution
  bool up = false;   // nearest 2x upsampling + convolution, after the ResBlock
  int64_t factor = 1;  // downsampling factor of the step's input
  int64_t channels() const { return out > 0 ? out : in; }
};
struct UNetPlan {
  std::vector<UNetStepPlan> input, output;
  int64_t middle_channels = 0, middle_factor = 1;
};
UNetPlan PlanUNet(const UNetConfig& config);

// A ResNet block with the timestep embedding added between its convolutions; the second
// convolution starts at zero, so a fresh block is the identity on its skip path.
class TimestepResBlockImpl : public torch::nn::Module, public Unit {
 public:
  TimestepResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t emb_dim, int64_t groups, double dropout);
  // x: [B, Cin, H, W]; emb: [B, E]. Returns [B, Cout, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);

  torch::nn::GroupNorm in_norm{nullptr}, out_norm{nullptr};
  torch::nn::Conv2d in_conv{nullptr}, out_conv{nullptr}, skip{nullptr};
  torch::nn::Linear emb_proj{nullptr};
  torch::nn::Dropout dropout{nullptr};

 private:
  torch::Tensor Body(const torch::Tensor& x, const torch::Tensor& emb);
};
TORCH_MODULE(TimestepResBlock);

// Latent diffusion's BasicTransformerBlock over the H*W positions.
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t dim, int64_t heads, int64_t context_dim);
  // x: [B, N, D]; context: [B, L, Dc]; mask: [B, L]. Returns [B, N, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, const torch::Tensor& mask);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};        // self, cross
  torch::nn::Linear ff_in{nullptr}, ff_out{nullptr};  // GEGLU: D -> 2 * 4D, 4D -> D
};
TORCH_MODULE(TransformerBlock);

// GroupNorm, 1x1 projection in, transformer blocks, 1x1 projection out (zero at the
// start), residual.
class SpatialTransformerImpl : public torch::nn::Module, public Unit {
 public:
  SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim, int64_t groups);
  // x: [B, C, H, W]; context: [B, L, Dc]; mask: [B, L]. Returns [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, const torch::Tensor& mask);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d proj_in{nullptr}, proj_out{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};

 private:
  torch::Tensor Body(const torch::Tensor& x, const torch::Tensor& context, const torch::Tensor& mask);
};
TORCH_MODULE(SpatialTransformer);

// One step of the U-Net's paths (openaimodel's TimestepEmbedSequential): a ResBlock
// with an optional transformer after it, or a 2x resampler.
class UNetStepImpl : public torch::nn::Module {
 public:
  UNetStepImpl() = default;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb, const torch::Tensor& context,
                        const torch::Tensor& mask);

  TimestepResBlock res{nullptr};
  SpatialTransformer attn{nullptr};
  torch::nn::Conv2d down{nullptr};  // 3x3, stride 2
  torch::nn::Conv2d up{nullptr};    // 3x3 after nearest 2x upsampling
};
TORCH_MODULE(UNetStep);

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetConfig& config);
  // x_t: [B, Cin, H, W] (extra input channels already concatenated); t: int64 [B];
  // context: [B, L, Dc]; mask: bool [B, L]; embed: [B, embed_dim] or undefined;
  // aug_t: int64 [B] with aug_embed, else undefined.
  // Returns [B, Cout, H, W]. H and W are divisible by 2^(levels - 1).
  torch::Tensor forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                        const torch::Tensor& mask, const torch::Tensor& embed = {}, const torch::Tensor& aug_t = {});

  UNetConfig config;
  torch::nn::Sequential time_embed{nullptr}, aug_embed{nullptr};
  torch::nn::Linear embed_proj{nullptr}, embed_to_tokens{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::GroupNorm out_norm{nullptr};
  // The steps in call order (PlanUNet).
  std::vector<UNetStep> input_blocks, output_blocks;
  TimestepResBlock middle_res1{nullptr}, middle_res2{nullptr};
  SpatialTransformer middle_attn{nullptr};
};
TORCH_MODULE(UNet);

// FLOPs of one forward pass (convolutions, linear layers, attention; 2 per MAC).
double UNetForwardFlops(const UNetConfig& config, int64_t image_size, int64_t batch, int64_t context_tokens);

}  // namespace loom::models

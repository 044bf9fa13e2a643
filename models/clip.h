// CLIP's two towers (Radford et al. 2021): an image tower (a ViT: patches, a class token,
// learned positions, pre-norm blocks, the class token normalised and projected) and a
// text tower (the caption Transformer of text_encoder.h, its output at the last real
// token projected), each giving an embedding of embed_dim, and the learned temperature
// of their contrastive loss, kept as log(1 / T). The embeddings are not normalised here:
// the stage and its users normalise them.
#pragma once

#include <torch/torch.h>

#include <utility>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "models/options.h"
#include "models/text_encoder.h"

namespace loom::models {

struct ClipConfig {
  int64_t image_size = 32;
  int64_t channels = 1;
  int64_t patch = 4;
  int64_t width = 128;
  int64_t depth = 4;
  int64_t heads = 4;
  int64_t embed_dim = 128;
  TextEncoderOptions text;
  int64_t max_tokens = 16;
};

// The config of `options` for images of `image_size` x `channels` and captions of
// `max_tokens`; an error when the patch does not divide the side.
absl::StatusOr<ClipConfig> ResolveClip(const ClipOptions& options, int64_t image_size, int64_t channels,
                                       int64_t max_tokens);

class ClipImageTowerImpl : public torch::nn::Module {
 public:
  explicit ClipImageTowerImpl(const ClipConfig& config);
  torch::Tensor forward(const torch::Tensor& images);  // [B, C, H, W] -> [B, embed_dim]

  torch::nn::Conv2d patch_embed{nullptr};
  torch::Tensor class_token;  // [width]
  torch::Tensor positions;    // [1 + patches, width]
  torch::nn::LayerNorm pre_norm{nullptr}, post_norm{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::Tensor proj;  // [width, embed_dim]
};
TORCH_MODULE(ClipImageTower);

class ClipTextTowerImpl : public torch::nn::Module {
 public:
  explicit ClipTextTowerImpl(const ClipConfig& config);
  // Per-token features [B, L, text width] after the final norm (what a decoder or a
  // prior may attend to) and the embedding [B, embed_dim] of the last real token.
  std::pair<torch::Tensor, torch::Tensor> Encode(const torch::Tensor& tokens, const torch::Tensor& mask);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& mask) { return Encode(tokens, mask).second; }

  TextEncoder encoder{nullptr};
  torch::Tensor proj;  // [text width, embed_dim]
};
TORCH_MODULE(ClipTextTower);

class ClipModelImpl : public torch::nn::Module {
 public:
  explicit ClipModelImpl(const ClipConfig& config);

  ClipConfig config;
  ClipImageTower image{nullptr};
  ClipTextTower text{nullptr};
  torch::Tensor logit_scale;  // log(1 / temperature), a scalar
};
TORCH_MODULE(ClipModel);

// The start value of logit_scale, ln(1 / 0.07), and its upper clamp, ln(100).
double ClipInitialLogitScale();
double ClipMaxLogitScale();

// FLOPs of one forward pass of both towers over `batch` image-caption pairs.
double ClipForwardFlops(const ClipConfig& config, int64_t batch);

}  // namespace loom::models

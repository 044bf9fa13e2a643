// DiT (Peebles & Xie) with text by cross-attention: patch tokens with fixed 2-D
// positions; the timestep conditions each block through adaLN-Zero; each block attends
// to the caption features between its self-attention and its MLP (the conditioning
// pattern of every modern text-to-image model). Sizes are registered by name.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/unit.h"
#include "core/status.h"
#include "models/layers/attention.h"
#include "models/layers/embeddings.h"
#include "models/options.h"

namespace loom::models {

struct DiTConfig {
  int64_t image_size = 32;
  int64_t channels = 1;
  int64_t patch = 4;
  int64_t width = 256;
  int64_t depth = 6;
  int64_t heads = 4;
  double mlp_ratio = 4.0;
  int64_t context_dim = 256;  // width of the text features
};

// Resolves model.size ("S/4", ...) or the spelled-out numbers into a DiTConfig.
absl::StatusOr<DiTConfig> ResolveDiT(const DiTOptions& model, int64_t image_size, int64_t channels);
// The registered sizes: "XS/2", "XS/4", "S/2", "S/4", "B/2", "B/4", ...
std::vector<std::string> DiTSizes();

// x * (1 + scale) + shift, with [B, D] modulation over [B, N, D] tokens.
torch::Tensor Modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale);
// LayerNorm without affine parameters (eps 1e-6), as adaLN modulates it.
torch::nn::LayerNorm PlainNorm(int64_t width);

// One block; a Unit (core/unit.h), so ZeRO-3 shards and gathers blocks one at a time.
class DiTBlockImpl : public torch::nn::Module, public Unit {
 public:
  DiTBlockImpl(int64_t width, int64_t heads, double mlp_ratio, int64_t context_dim);
  // x: [B, N, D]; c: [B, D] (timestep); context: [B, L, Dc]; mask: [B, L].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& context,
                        const torch::Tensor& mask);
  torch::Tensor Body(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& context,
                     const torch::Tensor& mask);
  torch::nn::LayerNorm norm1{nullptr}, norm_cross{nullptr}, norm2{nullptr};
  Attention attn{nullptr}, cross_attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Linear adaLN_modulation{nullptr};  // c -> shift, scale, gate for attn and mlp
};
TORCH_MODULE(DiTBlock);

class DiTImpl : public torch::nn::Module {
 public:
  explicit DiTImpl(const DiTConfig& config);
  // x_t: [B, C, H, W]; t: int64 [B]; context: [B, L, Dc]; mask: bool [B, L].
  // Returns the prediction [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                        const torch::Tensor& mask);

  DiTConfig config;
  PatchEmbed x_embedder{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  torch::Tensor pos_embed;  // buffer [N, D]
  std::vector<DiTBlock> block_list;
  torch::nn::LayerNorm final_norm{nullptr};
  torch::nn::Linear final_adaLN{nullptr}, final_linear{nullptr};
};
TORCH_MODULE(DiT);

// FLOPs of one forward pass for `batch` samples (matmuls and attention, 2 per MAC).
double DiTForwardFlops(const DiTConfig& config, int64_t batch, int64_t context_tokens);

}  // namespace loom::models

// DALL-E 2's diffusion prior (Ramesh et al. 2022): from a caption's CLIP text embedding
// and per-token encodings to a CLIP image embedding. A causal Transformer reads, in order,
// the caption's tokens, its text embedding, the timestep's embedding, the noised image
// embedding and a learned query, each projected to the model's width; the output at the
// query predicts the clean image embedding. A caption dropped for guidance becomes the
// learned null tokens and null text embedding.
#pragma once

#include <torch/torch.h>

#include "models/layers/embeddings.h"
#include "models/options.h"
#include "models/text_encoder.h"

namespace loom::models {

struct PriorConfig {
  int64_t embed_dim = 128;   // D: the CLIP embedding
  int64_t text_width = 128;  // width of the CLIP text tower's per-token encodings
  int64_t max_tokens = 16;   // L
  int64_t width = 256;
  int64_t depth = 6;
  int64_t heads = 4;
};

class PriorNetImpl : public torch::nn::Module {
 public:
  explicit PriorNetImpl(const PriorConfig& config);
  // x_t [B, D] at timesteps t [B]; text_embed [B, D]; tokens [B, L, text_width] with their
  // mask [B, L] (true = real); dropped [B] bool: rows whose caption is replaced by the
  // null one. Returns the predicted clean embedding [B, D].
  torch::Tensor forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& text_embed,
                        const torch::Tensor& tokens, const torch::Tensor& mask, const torch::Tensor& dropped);

  PriorConfig config;
  torch::nn::Linear text_proj{nullptr}, embed_proj{nullptr}, x_proj{nullptr}, out{nullptr};
  TimestepEmbedder time{nullptr};
  torch::Tensor query;        // [width]
  torch::Tensor positions;    // [L + 4, width]
  torch::Tensor null_tokens;  // [L, width]
  torch::Tensor null_embed;   // [width]
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
};
TORCH_MODULE(PriorNet);

// FLOPs of one forward pass over `batch` rows.
double PriorForwardFlops(const PriorConfig& config, int64_t batch);

}  // namespace loom::models

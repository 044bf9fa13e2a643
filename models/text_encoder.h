// The text encoder: a small pre-norm Transformer over caption token ids with the padding
// mask, giving the per-token features every model attends to by cross-attention.
#pragma once

#include <torch/torch.h>

#include "models/layers/attention.h"
#include "models/options.h"

namespace loom::models {

class TextBlockImpl : public torch::nn::Module {
 public:
  TextBlockImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);  // [B, L, D]
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(TextBlock);

class TextEncoderImpl : public torch::nn::Module {
 public:
  TextEncoderImpl(const TextEncoderOptions& options, int64_t max_tokens);
  // tokens: int64 [B, L]; mask: bool [B, L] (true = real token). Returns [B, L, width].
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& mask);

  TextEncoderOptions options;
  torch::nn::Embedding token_embedding{nullptr};
  torch::Tensor positions;  // [max_tokens, width], learned
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
};
TORCH_MODULE(TextEncoder);

}  // namespace loom::models

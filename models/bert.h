// A BERT-family text encoder (Devlin et al.; Hugging Face's BertModel without the
// pooler): word + position + token-type embeddings, then post-norm Transformer layers
// with exact-GELU feed-forwards. Submodules carry BertModel's names
// (embeddings.word_embeddings, encoder.layer.N.attention.self.query, ...), so a
// pretrained checkpoint's tensors load by name. Its per-token outputs are the context
// that diffusion networks attend to.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/options.h"

namespace loom::models {

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertOptions& options);
  // x: [B, L, D]; mask: [B, L] bool, true for real tokens. Returns [B, L, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  int64_t heads;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};  // attention.self.*
  torch::nn::Linear attention_dense{nullptr};                       // attention.output.dense
  torch::nn::LayerNorm attention_norm{nullptr};                     // attention.output.LayerNorm
  torch::nn::Linear intermediate{nullptr};                          // intermediate.dense
  torch::nn::Linear output_dense{nullptr};                          // output.dense
  torch::nn::LayerNorm output_norm{nullptr};                        // output.LayerNorm
};
TORCH_MODULE(BertLayer);

class BertImpl : public torch::nn::Module {
 public:
  explicit BertImpl(const BertOptions& options);
  // tokens: int64 [B, L], L <= max_position_embeddings; mask: bool [B, L] (true = real
  // token). Returns the last layer's hidden states [B, L, hidden_size].
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& mask);

  BertOptions options;
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm embedding_norm{nullptr};  // embeddings.LayerNorm
  std::vector<BertLayer> layers;                 // encoder.layer.N
};
TORCH_MODULE(Bert);

}  // namespace loom::models

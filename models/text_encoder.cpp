// Caption Transformer (see text_encoder.h).
#include "models/text_encoder.h"

namespace loom::models {

TextBlockImpl::TextBlockImpl(int64_t width, int64_t heads) {
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  attn = register_module("attn", Attention(AttentionOptions(width, heads)));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  mlp = register_module("mlp", Mlp(width, 4 * width));
}

torch::Tensor TextBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const torch::Tensor h = norm1->forward(x);
  torch::Tensor y = x + attn->forward(h, h, mask);  // padded tokens are never attended to
  return y + mlp->forward(norm2->forward(y));       // [B, L, D]
}

TextEncoderImpl::TextEncoderImpl(const TextEncoderOptions& o, int64_t max_tokens) : options(o) {
  token_embedding = register_module("token_embedding", torch::nn::Embedding(o.vocab, o.width));
  positions = register_parameter("positions", torch::randn({max_tokens, o.width}) * 0.02);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < o.depth; ++i) blocks->push_back(TextBlock(o.width, o.heads));
  final_norm = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.width})));
}

torch::Tensor TextEncoderImpl::forward(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const int64_t L = tokens.size(1);
  TORCH_CHECK(L <= positions.size(0), "caption of ", L, " tokens is longer than the encoder's ",
              positions.size(0));
  torch::Tensor x = token_embedding->forward(tokens) + positions.narrow(0, 0, L).unsqueeze(0);  // [B, L, D]
  for (const auto& block : *blocks) x = block->as<TextBlockImpl>()->forward(x, mask);
  return final_norm->forward(x);  // [B, L, D]
}

}  // namespace loom::models

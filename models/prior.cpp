// The diffusion prior's network (see prior.h).
#include "models/prior.h"

namespace loom::models {

PriorNetImpl::PriorNetImpl(const PriorConfig& c) : config(c) {
  text_proj = register_module("text_proj", torch::nn::Linear(c.text_width, c.width));
  embed_proj = register_module("embed_proj", torch::nn::Linear(c.embed_dim, c.width));
  x_proj = register_module("x_proj", torch::nn::Linear(c.embed_dim, c.width));
  time = register_module("time", TimestepEmbedder(c.width));
  query = register_parameter("query", torch::randn({c.width}) * 0.02);
  positions = register_parameter("positions", torch::randn({c.max_tokens + 4, c.width}) * 0.02);
  null_tokens = register_parameter("null_tokens", torch::randn({c.max_tokens, c.width}) * 0.02);
  null_embed = register_parameter("null_embed", torch::randn({c.width}) * 0.02);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.depth; ++i) blocks->push_back(TextBlock(c.width, c.heads));
  final_norm = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  out = register_module("out", torch::nn::Linear(c.width, c.embed_dim));
}

torch::Tensor PriorNetImpl::forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& text_embed,
                                    const torch::Tensor& tokens, const torch::Tensor& mask,
                                    const torch::Tensor& dropped) {
  const int64_t B = x_t.size(0), L = tokens.size(1), W = config.width;
  TORCH_CHECK(L == config.max_tokens, "the prior takes ", config.max_tokens, " caption tokens, not ", L);
  const torch::Tensor drop = dropped.to(torch::kBool).view({B, 1});
  torch::Tensor text = text_proj->forward(tokens);                                            // [B, L, W]
  text = torch::where(drop.unsqueeze(-1), null_tokens.unsqueeze(0).expand({B, L, W}), text);  // null caption
  torch::Tensor embed = torch::where(drop, null_embed.unsqueeze(0).expand({B, W}), embed_proj->forward(text_embed));
  torch::Tensor x = torch::cat({text, embed.unsqueeze(1), time->forward(t).unsqueeze(1),
                                x_proj->forward(x_t).unsqueeze(1), query.view({1, 1, W}).expand({B, 1, W})},
                               1) +
                    positions;  // [B, L + 4, W]
  // Causal, and no attention to padding (a null caption is all real tokens). Every row
  // sees at least the first token, which is always real.
  const int64_t N = L + 4;
  const auto bools = torch::TensorOptions(torch::kBool).device(x.device());
  const torch::Tensor real = torch::cat({mask.to(torch::kBool) | drop, torch::ones({B, 4}, bools)}, 1);  // [B, N]
  const torch::Tensor causal = torch::ones({N, N}, bools).tril();
  const torch::Tensor allowed = causal.unsqueeze(0) & real.unsqueeze(1);  // [B, N, N]
  for (const auto& block : *blocks) x = block->as<TextBlockImpl>()->forward(x, allowed);
  return out->forward(final_norm->forward(x.select(1, N - 1)));  // [B, D]
}

double PriorForwardFlops(const PriorConfig& c, int64_t batch) {
  const double N = static_cast<double>(c.max_tokens + 4), W = static_cast<double>(c.width);
  const double per_block = 2 * N * W * 4 * W + 2 * N * N * W * 2 + 2 * N * W * 8 * W;
  double total = c.depth * per_block;
  total += 2.0 * c.max_tokens * c.text_width * W + 2.0 * 2 * c.embed_dim * W + 2.0 * W * c.embed_dim;
  total += 2.0 * 256 * W + 2.0 * W * W;  // the timestep MLP
  return total * static_cast<double>(batch);
}

}  // namespace loom::models

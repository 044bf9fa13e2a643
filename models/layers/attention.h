// Attention layers through LibTorch's scaled_dot_product_attention (fused kernels where
// the device has them): multi-head self-attention and cross-attention, where image
// tokens query and text tokens supply keys and values, with a key padding mask.
#pragma once

#include <torch/torch.h>

namespace loom::models {

struct AttentionOptions {
  AttentionOptions(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(int64_t, context_dim) = 0;  // cross-attention: width of the keys' source; 0 = dim
  TORCH_ARG(bool, qk_norm) = false;     // RMS-normalise queries and keys (stabilises bf16)
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  // x: [B, N, D]; context: [B, L, Dc] or undefined (self-attention); mask: [B, L] bool,
  // true where a context token is real, or [B, N, L], true where query n may attend to
  // key l (a causal mask). Returns [B, N, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {},
                        const torch::Tensor& mask = {});

  AttentionOptions options;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, proj{nullptr};
};
TORCH_MODULE(Attention);

// A two-layer GELU MLP.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x) { return fc2->forward(torch::gelu(fc1->forward(x), "tanh")); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace loom::models

// Self- and cross-attention (see attention.h).
#include "models/layers/attention.h"

namespace loom::models {

AttentionImpl::AttentionImpl(const AttentionOptions& o) : options(o) {
  TORCH_CHECK(o.dim() % o.heads() == 0, "attention width ", o.dim(), " is not divisible by ", o.heads(), " heads");
  const int64_t kv_in = o.context_dim() > 0 ? o.context_dim() : o.dim();
  q = register_module("q", torch::nn::Linear(o.dim(), o.dim()));
  k = register_module("k", torch::nn::Linear(kv_in, o.dim()));
  v = register_module("v", torch::nn::Linear(kv_in, o.dim()));
  proj = register_module("proj", torch::nn::Linear(o.dim(), o.dim()));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                     const torch::Tensor& mask) {
  const torch::Tensor& src = context.defined() ? context : x;
  const int64_t B = x.size(0), N = x.size(1), L = src.size(1), H = options.heads();
  const int64_t Dh = options.dim() / H;
  torch::Tensor qh = q->forward(x).view({B, N, H, Dh}).transpose(1, 2);    // [B, H, N, Dh]
  torch::Tensor kh = k->forward(src).view({B, L, H, Dh}).transpose(1, 2);  // [B, H, L, Dh]
  torch::Tensor vh = v->forward(src).view({B, L, H, Dh}).transpose(1, 2);  // [B, H, L, Dh]
  if (options.qk_norm()) {
    qh = qh * torch::rsqrt(qh.pow(2).mean(-1, true) + 1e-6);
    kh = kh * torch::rsqrt(kh.pow(2).mean(-1, true) + 1e-6);
  }
  std::optional<torch::Tensor> attn_mask;
  if (mask.defined()) {  // true: attend; per key [B, L], or per query and key [B, N, L]
    attn_mask = mask.dim() == 3 ? mask.view({B, 1, N, L}) : mask.view({B, 1, 1, L});
  }
  torch::Tensor out = torch::scaled_dot_product_attention(qh, kh, vh, attn_mask);  // [B, H, N, Dh]
  return proj->forward(out.transpose(1, 2).reshape({B, N, H * Dh}));              // [B, N, D]
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

}  // namespace loom::models

// DiT with cross-attention to text (see dit.h).
#include "models/dit.h"

#include <map>

namespace loom::models {
namespace {

struct Size {
  int64_t width, depth, heads;
};

// DiT's table, plus an extra-small size for CPU runs.
const std::map<std::string, Size>& Sizes() {
  static const std::map<std::string, Size> sizes = {
      {"XS", {192, 6, 3}}, {"S", {384, 12, 6}}, {"B", {768, 12, 12}},
      {"L", {1024, 24, 16}}, {"XL", {1152, 28, 16}}};
  return sizes;
}

}  // namespace

torch::Tensor Modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

torch::nn::LayerNorm PlainNorm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).elementwise_affine(false).eps(1e-6));
}

std::vector<std::string> DiTSizes() {
  std::vector<std::string> names;
  for (const auto& [name, size] : Sizes()) {
    for (int p : {2, 4, 8}) names.push_back(name + "/" + std::to_string(p));
  }
  return names;
}

absl::StatusOr<DiTConfig> ResolveDiT(const DiTOptions& m, int64_t image_size, int64_t channels) {
  DiTConfig c;
  c.image_size = image_size;
  c.channels = channels;
  c.patch = m.patch;
  c.width = m.width;
  c.depth = m.depth;
  c.heads = m.heads;
  c.mlp_ratio = m.mlp_ratio;
  c.context_dim = m.text.width;
  if (!m.size.empty()) {
    const size_t slash = m.size.find('/');
    const auto it = Sizes().find(m.size.substr(0, slash));
    if (slash == std::string::npos || it == Sizes().end()) {
      std::string known;
      for (const auto& n : DiTSizes()) known += (known.empty() ? "" : ", ") + n;
      return absl::InvalidArgumentError("stage.model.size '" + m.size + "' is not a registered DiT size (" + known + ")");
    }
    c.width = it->second.width;
    c.depth = it->second.depth;
    c.heads = it->second.heads;
    c.patch = std::stoi(m.size.substr(slash + 1));
  }
  if (image_size % c.patch != 0) {
    return absl::InvalidArgumentError("image size " + std::to_string(image_size) + " is not divisible by patch " +
                                      std::to_string(c.patch));
  }
  if (c.width % c.heads != 0 || c.width % 4 != 0) {
    return absl::InvalidArgumentError("DiT width " + std::to_string(c.width) +
                                      " must be divisible by the heads and by 4");
  }
  return c;
}

DiTBlockImpl::DiTBlockImpl(int64_t width, int64_t heads, double mlp_ratio, int64_t context_dim) {
  norm1 = register_module("norm1", PlainNorm(width));
  attn = register_module("attn", Attention(AttentionOptions(width, heads)));
  norm_cross = register_module("norm_cross", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  cross_attn = register_module("cross_attn", Attention(AttentionOptions(width, heads).context_dim(context_dim)));
  norm2 = register_module("norm2", PlainNorm(width));
  mlp = register_module("mlp", Mlp(width, static_cast<int64_t>(width * mlp_ratio)));
  adaLN_modulation = register_module("adaLN_modulation", torch::nn::Linear(width, 6 * width));
  // adaLN-Zero: every gate starts at 0, so each block starts as the identity.
  torch::NoGradGuard no_grad;
  adaLN_modulation->weight.zero_();
  adaLN_modulation->bias.zero_();
}

torch::Tensor DiTBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& c,
                                    const torch::Tensor& context, const torch::Tensor& mask) {
  // `this` stays valid: a hook may rerun the body during backward, while the model lives.
  return Call({x, c, context, mask}, [this](const Tensors& in) { return Tensors{Body(in[0], in[1], in[2], in[3])}; })[0];
}

torch::Tensor DiTBlockImpl::Body(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& context,
                                 const torch::Tensor& mask) {
  const auto m = adaLN_modulation->forward(torch::silu(c)).chunk(6, 1);  // 6 x [B, D]
  torch::Tensor h = x + m[2].unsqueeze(1) * attn->forward(Modulate(norm1->forward(x), m[0], m[1]));  // [B, N, D]
  h = h + cross_attn->forward(norm_cross->forward(h), context, mask);  // image queries, text keys/values
  return h + m[5].unsqueeze(1) * mlp->forward(Modulate(norm2->forward(h), m[3], m[4]));  // [B, N, D]
}

DiTImpl::DiTImpl(const DiTConfig& c) : config(c) {
  const int64_t grid = c.image_size / c.patch;
  x_embedder = register_module("x_embedder", PatchEmbed(c.channels, c.width, c.patch));
  t_embedder = register_module("t_embedder", TimestepEmbedder(c.width));
  pos_embed = register_buffer("pos_embed", SinCosPositions2d(c.width, grid));
  for (int64_t i = 0; i < c.depth; ++i) {
    block_list.push_back(register_module("blocks_" + std::to_string(i),
                                         DiTBlock(c.width, c.heads, c.mlp_ratio, c.context_dim)));
  }
  final_norm = register_module("final_norm", PlainNorm(c.width));
  final_adaLN = register_module("final_adaLN", torch::nn::Linear(c.width, 2 * c.width));
  final_linear = register_module("final_linear", torch::nn::Linear(c.width, c.patch * c.patch * c.channels));
  torch::NoGradGuard no_grad;
  // Zero-initialised output: the untrained model predicts 0 (DiT's initialisation).
  for (auto* l : {&final_adaLN, &final_linear}) {
    (*l)->weight.zero_();
    (*l)->bias.zero_();
  }
}

torch::Tensor DiTImpl::forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                               const torch::Tensor& mask) {
  torch::Tensor x = x_embedder->forward(x_t) + pos_embed.unsqueeze(0);  // [B, N, D], N = H*W/p^2
  const torch::Tensor c = t_embedder->forward(t);                       // [B, D]
  for (DiTBlock& block : block_list) x = block->forward(x, c, context, mask);  // [B, N, D]
  const auto m = final_adaLN->forward(torch::silu(c)).chunk(2, 1);                 // shift, scale [B, D]
  x = final_linear->forward(Modulate(final_norm->forward(x), m[0], m[1]));          // [B, N, p*p*C]
  return Unpatchify(x, config.channels, config.patch, x_t.size(2), x_t.size(3));  // [B, C, H, W]
}

double DiTForwardFlops(const DiTConfig& c, int64_t batch, int64_t context_tokens) {
  const double N = static_cast<double>(c.image_size / c.patch) * (c.image_size / c.patch);
  const double D = c.width, L = context_tokens, Dc = c.context_dim;
  const double hidden = D * c.mlp_ratio;
  double per_block = 0;
  per_block += 2 * N * D * 3 * D + 2 * N * N * D * 2 + 2 * N * D * D;                   // self-attention
  per_block += 2 * N * D * D + 2 * L * Dc * 2 * D + 2 * N * L * D * 2 + 2 * N * D * D;  // cross-attention
  per_block += 2 * N * D * hidden * 2;                                                   // MLP
  per_block += 2 * D * 6 * D;                                                            // adaLN
  double total = c.depth * per_block;
  total += 2 * N * (c.patch * c.patch * c.channels) * D * 2;  // patch embed + final linear
  return total * static_cast<double>(batch);
}

}  // namespace loom::models

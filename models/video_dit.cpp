// The spatio-temporal DiT (see video_dit.h).
#include "models/video_dit.h"

namespace loom::models {

torch::Tensor SinCosPositions3d(int64_t dim, int64_t frames, int64_t grid) {
  const int64_t time_dim = dim / 4, space_dim = dim - time_dim;
  TORCH_CHECK(time_dim % 2 == 0 && space_dim % 4 == 0, "3-D sin-cos positions need a width divisible by 16, got ",
              dim);
  const int64_t half = time_dim / 2;
  const torch::Tensor omega = 1.0 / torch::pow(10000.0, torch::arange(half, torch::kFloat32) / half);
  const torch::Tensor angle = torch::arange(frames, torch::kFloat32).unsqueeze(1) * omega.unsqueeze(0);  // [t, half]
  const torch::Tensor time = torch::cat({torch::sin(angle), torch::cos(angle)}, 1);                      // [t, dim/4]
  const torch::Tensor space = SinCosPositions2d(space_dim, grid);                                       // [g*g, 3dim/4]
  const int64_t S = grid * grid;
  return torch::cat({time.unsqueeze(1).expand({frames, S, time_dim}), space.unsqueeze(0).expand({frames, S, space_dim})},
                    2)
      .reshape({frames * S, dim});
}

TemporalAttentionImpl::TemporalAttentionImpl(int64_t width, int64_t heads) {
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-6)));
  attn = register_module("attn", Attention(AttentionOptions(width, heads)));
  torch::NoGradGuard no_grad;
  attn->proj->weight.zero_();
  attn->proj->bias.zero_();
}

torch::Tensor TemporalAttentionImpl::forward(const torch::Tensor& x, int64_t frames) {
  const int64_t B = x.size(0), D = x.size(2), S = x.size(1) / frames;
  // [B, t * S, D] -> one sequence of t tokens per (clip, position): [B * S, t, D].
  const torch::Tensor seq = x.reshape({B, frames, S, D}).transpose(1, 2).reshape({B * S, frames, D});
  const torch::Tensor out = attn->forward(norm->forward(seq));
  return x + out.reshape({B, S, frames, D}).transpose(1, 2).reshape({B, frames * S, D});
}

VideoDiTImpl::VideoDiTImpl(const VideoDiTConfig& c) : config(c) {
  const DiTConfig& d = c.dit;
  x_embedder = register_module("x_embedder", PatchEmbed(d.channels, d.width, d.patch));
  t_embedder = register_module("t_embedder", TimestepEmbedder(d.width));
  for (int64_t i = 0; i < d.depth; ++i) {
    block_list.push_back(register_module("blocks_" + std::to_string(i),
                                         DiTBlock(d.width, d.heads, d.mlp_ratio, d.context_dim)));
    if (c.factorized) {
      temporal_list.push_back(register_module("temporal_" + std::to_string(i), TemporalAttention(d.width, d.heads)));
    }
  }
  final_norm = register_module("final_norm", PlainNorm(d.width));
  final_adaLN = register_module("final_adaLN", torch::nn::Linear(d.width, 2 * d.width));
  final_linear = register_module("final_linear", torch::nn::Linear(d.width, d.patch * d.patch * d.channels));
  torch::NoGradGuard no_grad;
  for (auto* l : {&final_adaLN, &final_linear}) {  // the untrained model predicts 0
    (*l)->weight.zero_();
    (*l)->bias.zero_();
  }
}

int64_t VideoDiTImpl::tokens(int64_t frames) const {
  const int64_t g = config.dit.image_size / config.dit.patch;
  return frames * g * g;
}

torch::Tensor VideoDiTImpl::forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                                    const torch::Tensor& mask) {
  const DiTConfig& d = config.dit;
  const int64_t B = x_t.size(0), C = x_t.size(1), T = x_t.size(2), H = x_t.size(3), W = x_t.size(4);
  const int64_t grid = H / d.patch, S = grid * grid;
  // Every frame patched alike: [B * t, S, D], then time-major tokens [B, t * S, D].
  const torch::Tensor frames = x_t.transpose(1, 2).reshape({B * T, C, H, W});
  const torch::Tensor positions = SinCosPositions3d(d.width, T, grid).to(x_t.device(), x_t.dtype());
  torch::Tensor x = x_embedder->forward(frames).reshape({B, T * S, d.width}) + positions.unsqueeze(0);
  const torch::Tensor c = t_embedder->forward(t);  // [B, D]
  if (!config.factorized) {
    for (DiTBlock& block : block_list) x = block->forward(x, c, context, mask);  // all t * S tokens attend
  } else {
    // Each frame's tokens as a sequence of their own, with the clip's timestep and caption.
    const torch::Tensor c_frames = c.repeat_interleave(T, 0);
    const torch::Tensor ctx_frames = context.repeat_interleave(T, 0), mask_frames = mask.repeat_interleave(T, 0);
    for (size_t i = 0; i < block_list.size(); ++i) {
      x = block_list[i]->forward(x.reshape({B * T, S, d.width}), c_frames, ctx_frames, mask_frames).reshape({B, T * S, d.width});
      x = temporal_list[i]->forward(x, T);
    }
  }
  const auto m = final_adaLN->forward(torch::silu(c)).chunk(2, 1);
  x = final_linear->forward(Modulate(final_norm->forward(x), m[0], m[1]));  // [B, t * S, p * p * C]
  const torch::Tensor out = Unpatchify(x.reshape({B * T, S, -1}), C, d.patch, H, W);  // [B * t, C, H, W]
  return out.reshape({B, T, C, H, W}).transpose(1, 2);                               // [B, C, t, H, W]
}

double VideoDiTForwardFlops(const VideoDiTConfig& c, int64_t batch, int64_t frames, int64_t context_tokens) {
  const DiTConfig& d = c.dit;
  const double S = static_cast<double>(d.image_size / d.patch) * (d.image_size / d.patch);
  const double T = static_cast<double>(frames), N = T * S;
  const double D = d.width, L = context_tokens, Dc = d.context_dim, hidden = D * d.mlp_ratio;
  // Self-attention: full over N tokens, or per frame over S (plus temporal over T).
  const double attended = c.factorized ? S : N;
  double per_block = 2 * N * D * 3 * D + 2 * N * attended * D * 2 + 2 * N * D * D;
  if (c.factorized) per_block += 2 * N * D * 3 * D + 2 * N * T * D * 2 + 2 * N * D * D;
  // Cross-attention (the caption's keys and values per sequence: once per clip, or per frame).
  const double sequences = c.factorized ? T : 1;
  per_block += 2 * N * D * D + sequences * 2 * L * Dc * 2 * D + 2 * N * L * D * 2 + 2 * N * D * D;
  per_block += 2 * N * D * hidden * 2;      // MLP
  per_block += sequences * 2 * D * 6 * D;   // adaLN
  double total = d.depth * per_block;
  total += 2 * N * (d.patch * d.patch * d.channels) * D * 2;  // patch embed + final linear
  return total * static_cast<double>(batch);
}

}  // namespace loom::models

// A spatio-temporal DiT (the Sora recipe at small scale): a latent clip [B, C, t, h, w]
// becomes t x (h/p) x (w/p) patch tokens with fixed 3-D sin-cos positions (a quarter of
// the width for time, the rest a 2-D grid for space); the timestep conditions every
// block by adaLN-Zero and every block attends to the caption by cross-attention. The
// blocks are the image DiT's (models/dit.h): with full attention one block sees every
// space-time token; factorised, it runs over each frame's tokens and is followed by an
// attention over time at each position (zero-initialised, so it starts as the identity).
// Any number of latent frames goes through the same weights, one frame included.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/dit.h"
#include "models/layers/attention.h"
#include "models/layers/embeddings.h"

namespace loom::models {

struct VideoDiTConfig {
  DiTConfig dit;            // image_size: the latent side; channels: latent channels
  bool factorized = false;  // spatial blocks + temporal attention instead of full 3-D attention
};

// [t * g * g, dim] positions of a t x g x g token grid, time-major: dim / 4 of sin-cos
// over the frame index, then the 2-D sin-cos grid of the other 3 dim / 4.
torch::Tensor SinCosPositions3d(int64_t dim, int64_t frames, int64_t grid);

// Attention over time at each spatial position, with a residual; its output projection
// starts at zero.
class TemporalAttentionImpl : public torch::nn::Module {
 public:
  TemporalAttentionImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x, int64_t frames);  // x: [B, t * S, D]
  torch::nn::LayerNorm norm{nullptr};
  Attention attn{nullptr};
};
TORCH_MODULE(TemporalAttention);

class VideoDiTImpl : public torch::nn::Module {
 public:
  explicit VideoDiTImpl(const VideoDiTConfig& config);
  // x_t: [B, C, t, h, w]; t: [B] (model time); context: [B, L, Dc]; mask: bool [B, L].
  // Returns the prediction [B, C, t, h, w].
  torch::Tensor forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                        const torch::Tensor& mask);
  // Tokens of a clip of `frames` latent frames.
  int64_t tokens(int64_t frames) const;

  VideoDiTConfig config;
  PatchEmbed x_embedder{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  std::vector<DiTBlock> block_list;
  std::vector<TemporalAttention> temporal_list;  // factorised only
  torch::nn::LayerNorm final_norm{nullptr};
  torch::nn::Linear final_adaLN{nullptr}, final_linear{nullptr};
};
TORCH_MODULE(VideoDiT);

// FLOPs of one forward pass over `batch` clips of `frames` latent frames.
double VideoDiTForwardFlops(const VideoDiTConfig& config, int64_t batch, int64_t frames, int64_t context_tokens);

}  // namespace loom::models

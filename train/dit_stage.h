// The text-to-image DiT stage: captions -> text encoder -> DiT, trained as a diffusion
// denoiser. One module, so a distribution strategy wraps text encoder and DiT together.
// Randomness of a sample (timestep, noise, caption dropout) is drawn from a generator
// seeded by (run seed, step, global sample id): any world size draws the same values.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/block_host.h"
#include "data/loader.h"
#include "diffusion/gaussian_diffusion.h"
#include "models/dit.h"
#include "models/text_encoder.h"

namespace loom::train {

class DiTStageImpl : public torch::nn::Module, public BlockHost {
 public:
  DiTStageImpl(const models::DiTConfig& dit, const models::TextEncoderOptions& text, int64_t max_tokens,
               diffusion::GaussianDiffusion diffusion);

  // Per-sample losses [B] of a batch (tokens and mask required). With `bf16` the forward
  // runs under autocast (matmuls and attention in bfloat16; weights, gradients and the
  // loss stay float32).
  torch::Tensor Loss(const data::Batch& batch, uint64_t seed, int64_t step, double caption_dropout,
                     bool bf16 = false);

  // Images in [-1, 1] for token rows (classifier-free guidance against the empty caption).
  torch::Tensor Sample(const torch::Tensor& tokens, const torch::Tensor& mask, double cfg, int steps,
                       uint64_t seed);

  std::vector<std::shared_ptr<torch::nn::Module>> blocks() override { return dit->blocks(); }
  void set_block_wrapper(Wrapper wrapper) override { dit->set_block_wrapper(std::move(wrapper)); }

  models::DiTConfig config;
  models::TextEncoder text{nullptr};
  models::DiT dit{nullptr};
  diffusion::GaussianDiffusion diffusion;

 private:
  diffusion::Denoiser Bind(const torch::Tensor& tokens, const torch::Tensor& mask);
};
TORCH_MODULE(DiTStage);

// Empty-caption rows (start token, then padding) like `tokens`.
void EmptyCaption(torch::Tensor tokens, torch::Tensor mask);

}  // namespace loom::train

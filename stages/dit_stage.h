// The text-to-image DiT stage (`stage.kind: dit`): captions -> text encoder -> DiT,
// trained as a diffusion denoiser on pixels, or, with `stage.vae`, on the latents of a
// frozen VAE (a cache made by `loom data encode --with` that VAE) and sampled through its
// decoder. Randomness of a sample (timestep, noise, latent draw, caption dropout) comes
// from a generator seeded by (run seed, step, global sample id): any world size draws
// the same values.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "diffusion/process.h"
#include "diffusion/options.h"
#include "models/dit.h"
#include "models/options.h"
#include "models/text_encoder.h"
#include "stages/denoising.h"
#include "stages/stage.h"

namespace loom::stages {

struct DiTStageOptions {
  models::DiTOptions model;
  diffusion::DiffusionOptions diffusion;
  std::string vae = "";  // a VAE export: train on its latents, sample through its decoder
  double caption_noise = 0.0;  // share of captions that get one or two random tokens inserted
  int preview_steps = 50;
  double preview_cfg = 4.0;
  JudgedEvalOptions eval;

  static void Describe(config::Fields<DiTStageOptions>& f);
};

class DiTStage : public Stage, public TextToImage {
 public:
  // `vae` (frozen, may be null) makes it a latent stage; `caption_dropout` is data's.
  DiTStage(const DiTStageOptions& options, const models::DiTConfig& config, const models::TextEncoderOptions& text,
           int max_tokens, std::shared_ptr<const diffusion::Process> diffusion,
           std::shared_ptr<const data::Tokenizer> tokenizer,
           std::shared_ptr<Stage> vae, double caption_dropout, ImageSpec pixels);

  std::string kind() const override { return "dit"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) override;
  nlohmann::ordered_json Describe() const override;
  double ForwardFlops(int64_t batch) const override { return models::DiTForwardFlops(config, batch, max_tokens); }
  std::map<std::string, std::string> Assets() const override;
  TextToImage* AsTextToImage() override { return this; }

  ImageSpec image_spec() const override { return pixels_; }
  absl::StatusOr<torch::Tensor> Generate(const std::vector<std::string>& prompts,
                                         const GenerateOptions& options) override;

  // Per-sample losses [B] of a batch (the stage's loss is their mean).
  torch::Tensor Losses(const data::Batch& batch, uint64_t seed, int64_t step, bool bf16);
  // Images (or latents, for a latent stage) for token rows, by the process's sampler with
  // classifier-free guidance against the empty caption; row i's noise from (seed, i).
  torch::Tensor Sample(const torch::Tensor& tokens, const torch::Tensor& mask, double cfg, int steps, uint64_t seed);

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  DiTStageOptions options;
  models::DiTConfig config;
  int max_tokens;
  models::TextEncoder text{nullptr};
  models::DiT dit{nullptr};
  std::shared_ptr<const diffusion::Process> diffusion;  // diffusion.process

 private:
  diffusion::Denoiser Bind(const torch::Tensor& tokens, const torch::Tensor& mask);
  int64_t patch_tokens() const { return (config.image_size / config.patch) * (config.image_size / config.patch); }

  std::shared_ptr<const data::Tokenizer> tokenizer_;
  std::shared_ptr<Stage> vae_;          // frozen; null for a pixel stage
  Autoencoder* autoencoder_ = nullptr;  // vae_'s
  double caption_dropout_;
  ImageSpec pixels_;                    // what Generate returns
  JudgedEvaluation judged_;
};

// The maker of the registry: checks the options against the data and dependencies.
struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeDiTStage(const StageInputs& inputs);

}  // namespace loom::stages

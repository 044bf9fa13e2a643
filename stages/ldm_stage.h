// The latent diffusion stage (`stage.kind: ldm`, Rombach et al.): a U-Net with
// cross-attention to caption features, trained as a denoiser on the latents of a frozen
// VAE (a cache made by `loom data encode --with` it) and sampled through its decoder, or
// on pixels without `stage.vae`. The caption features come from one of two encoders:
//   - `stage.text_encoder: EXPORT`, a frozen pretrained encoder (any export that encodes
//     text, such as one made by `loom import text-encoder`). Its per-token features are
//     cached by `loom data encode --with` it, so training never runs it; at sampling it
//     encodes the prompt. The cross-attention's context width is the encoder's.
//   - otherwise a small Transformer over the dataset's caption tokens, trained with the
//     U-Net (stage.text).
// Classifier-free guidance: data.caption_dropout of the captions are replaced by the
// empty caption (the frozen encoder's features of "", or the start token alone).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "data/tokenizer.h"
#include "diffusion/gaussian_diffusion.h"
#include "diffusion/options.h"
#include "models/options.h"
#include "models/text_encoder.h"
#include "models/unet.h"
#include "stages/denoising.h"
#include "stages/stage.h"

namespace loom::stages {

struct LdmStageOptions {
  models::UNetOptions model;
  diffusion::DiffusionOptions diffusion;
  std::string vae = "";           // a VAE export: train on its latents, sample through its decoder
  std::string text_encoder = "";  // a frozen text-encoder export whose features data.train caches
  models::TextEncoderOptions text;  // the encoder trained with the U-Net when text_encoder is empty
  int preview_steps = 50;
  double preview_cfg = 4.0;
  JudgedEvalOptions eval;

  static void Describe(config::Fields<LdmStageOptions>& f);
};

class LdmStage : public Stage, public TextToImage {
 public:
  // `vae` and `text_encoder` (frozen) may be null; without `text_encoder` the stage trains
  // its own over `tokenizer`'s ids.
  LdmStage(const LdmStageOptions& options, const models::UNetConfig& config, int64_t max_tokens,
           diffusion::GaussianDiffusion diffusion, std::shared_ptr<const data::Tokenizer> tokenizer,
           std::shared_ptr<Stage> vae, std::shared_ptr<Stage> text_encoder, double caption_dropout, ImageSpec pixels);

  std::string kind() const override { return "ldm"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) override;
  nlohmann::ordered_json Describe() const override;
  double ForwardFlops(int64_t batch) const override;
  std::map<std::string, std::string> Assets() const override;
  TextToImage* AsTextToImage() override { return this; }

  ImageSpec image_spec() const override { return pixels_; }
  absl::StatusOr<torch::Tensor> Generate(const std::vector<std::string>& prompts,
                                         const GenerateOptions& options) override;

  // Per-sample losses [B] of a batch (the stage's loss is their mean).
  torch::Tensor Losses(const data::Batch& batch, uint64_t seed, int64_t step, bool bf16);
  // Latents (or images) for caption features [B, L, D] and mask [B, L], by DDIM with
  // classifier-free guidance against the empty caption; row i's noise from (seed, i).
  torch::Tensor Sample(const torch::Tensor& context, const torch::Tensor& mask, double cfg, int steps, uint64_t seed);
  // Caption features and mask of `prompts` (the frozen encoder's, or the trained one's).
  std::pair<torch::Tensor, torch::Tensor> EncodePrompts(const std::vector<std::string>& prompts);
  // Those of the empty caption, `rows` times.
  std::pair<torch::Tensor, torch::Tensor> EmptyContext(int64_t rows);

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  LdmStageOptions options;
  models::UNetConfig config;
  int64_t image_size;  // of what the U-Net denoises
  int64_t max_tokens;  // L
  models::TextEncoder text{nullptr};  // null with a frozen encoder
  models::UNet unet{nullptr};
  diffusion::GaussianDiffusion diffusion;

 private:
  torch::Device device() const { return unet->conv_in->weight.device(); }

  std::shared_ptr<const data::Tokenizer> tokenizer_;  // with the trained encoder
  std::shared_ptr<Stage> vae_, text_encoder_;         // frozen, may be null
  Autoencoder* autoencoder_ = nullptr;
  TextEncoding* encoding_ = nullptr;
  torch::Tensor null_context_, null_mask_;  // the frozen encoder's features of "" [1, L, D], [1, L]
  double caption_dropout_;
  ImageSpec pixels_;
  JudgedEvaluation judged_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeLdmStage(const StageInputs& inputs);

}  // namespace loom::stages

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
//
// The stages of an Imagen cascade are ldm stages in pixel space (Saharia et al.):
//   - stage.pooled_text adds the masked mean of the caption features, projected, to the
//     timestep embedding (Imagen's pooled text vector);
//   - stage.thresholding: dynamic clips each sample's predicted x0 at a quantile of its
//     magnitude and rescales (Imagen), static clips it to [-1, 1];
//   - stage.low_res > 0 makes a super-resolution stage: it generates data.image_size
//     images from images of side low_res (data.image_size shrunk with antialiasing),
//     enlarged bicubically and concatenated to x_t as channels. In training that input
//     is noised to a random augmentation level in [0, stage.aug_max] (the fraction of
//     the diffusion's time; the network is told the level by a second timestep
//     embedding), and at sampling to stage.aug_level. stage.crop trains on random
//     crops, so the cost does not grow with the output side; the network runs on any
//     side divisible by its downsampling factor.
// A base stage and its super-resolution stages are trained as separate runs, in any
// order, and chained by 'loom export cascade' (stages/cascade.h).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "data/tokenizer.h"
#include "diffusion/gaussian_diffusion.h"
#include "diffusion/process.h"
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
  bool pooled_text = false;  // the pooled caption features added to the timestep embedding
  std::string thresholding = "static";  // of x0 at pixel-space sampling: static, dynamic or none
  double threshold_percentile = 0.995;   // the quantile of dynamic thresholding
  int low_res = 0;            // super-resolution: the side of the input; 0 = a base stage
  double aug_max = 0.5;       // highest noise-augmentation level of that input in training
  double aug_level = 0.1;     // its level at sampling
  int crop = 0;               // train on random crops of this side; 0 = whole images
  int preview_steps = 50;
  double preview_cfg = 4.0;
  JudgedEvalOptions eval;

  static void Describe(config::Fields<LdmStageOptions>& f);
};

class LdmStage : public Stage, public TextToImage, public SuperResolution {
 public:
  // `vae` and `text_encoder` (frozen) may be null; without `text_encoder` the stage trains
  // its own over `tokenizer`'s ids.
  LdmStage(const LdmStageOptions& options, const models::UNetConfig& config, int64_t max_tokens,
           std::shared_ptr<const diffusion::Process> diffusion, diffusion::GaussianDiffusion augmentation,
           std::shared_ptr<const data::Tokenizer> tokenizer,
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
  TextToImage* AsTextToImage() override { return options.low_res > 0 ? nullptr : this; }
  SuperResolution* AsSuperResolution() override { return options.low_res > 0 ? this : nullptr; }

  ImageSpec image_spec() const override { return pixels_; }
  absl::StatusOr<torch::Tensor> Generate(const std::vector<std::string>& prompts,
                                         const GenerateOptions& options) override;
  int64_t low_res() const override { return options.low_res; }
  absl::StatusOr<torch::Tensor> Upsample(const torch::Tensor& low, const std::vector<std::string>& captions,
                                         const UpsampleOptions& options) override;

  // Per-sample losses [B] of a batch (the stage's loss is their mean).
  torch::Tensor Losses(const data::Batch& batch, uint64_t seed, int64_t step, bool bf16);
  // Latents (or images) for caption features [B, L, D] and mask [B, L], by DDIM with
  // classifier-free guidance against the empty caption; row i's noise from (seed, i).
  // A super-resolution stage passes its noised, enlarged input `low` [B, C, S, S] and
  // its augmentation steps `aug_t` [B]; the output has low's side.
  torch::Tensor Sample(const torch::Tensor& context, const torch::Tensor& mask, double cfg, int steps, uint64_t seed,
                       const torch::Tensor& low = {}, const torch::Tensor& aug_t = {});
  // The diffusion step of augmentation level `level` in [0, 1].
  int64_t AugmentationStep(double level) const;
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
  std::shared_ptr<const diffusion::Process> diffusion;  // diffusion.process
  // The forward process that noises a super-resolution stage's input (Imagen's noise
  // conditioning augmentation): Gaussian on diffusion.schedule, whatever the process.
  diffusion::GaussianDiffusion augmentation;

 private:
  torch::Device device() const { return unet->conv_in->weight.device(); }
  // The U-Net on x_t with the conditioning of a batch (the pooled text when asked for).
  torch::Tensor Denoise(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                        const torch::Tensor& mask, const torch::Tensor& low, const torch::Tensor& aug_t);
  absl::StatusOr<nlohmann::ordered_json> EvaluateUpsampling(const PreviewData& data);

  std::shared_ptr<const data::Tokenizer> tokenizer_;  // with the trained encoder
  std::shared_ptr<Stage> vae_, text_encoder_;         // frozen, may be null
  Autoencoder* autoencoder_ = nullptr;
  TextEncoding* encoding_ = nullptr;
  torch::Tensor null_context_, null_mask_;  // the frozen encoder's features of "" [1, L, D], [1, L]
  double caption_dropout_;
  ImageSpec pixels_;
  JudgedEvaluation judged_;
  std::optional<eval::Judge> sr_judge_;  // a super-resolution stage's judge, once loaded
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeLdmStage(const StageInputs& inputs);

}  // namespace loom::stages

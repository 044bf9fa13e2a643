// DALL-E 2's decoder (`stage.kind: unclip`): a U-Net on pixels that makes an image from
// a CLIP image embedding and the caption, the third stage after CLIP and the prior. The
// image embedding enters two ways (Ramesh et al. after GLIDE): projected and added to the
// timestep embedding, and as `stage.embed_tokens` extra context tokens beside the
// caption's tokens in every cross-attention. The caption's tokens are the CLIP text
// tower's per-token features, so the training data is the cache a CLIP export made
// (`loom data encode --with` it: pixels, clip_image, text, text_mask), and that export is
// the stage's frozen dependency (`stage.clip`). For guidance, the image embedding is
// dropped (zeros) for `stage.image_dropout` of the samples and the caption (CLIP's
// features of "") for `stage.text_dropout`, each by its own coin; sampling guides against
// both dropped. With `stage.prior` (a prior export trained on the same CLIP), the stage
// makes images from text: the prior predicts the image embedding of each prompt.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "diffusion/process.h"
#include "diffusion/options.h"
#include "models/options.h"
#include "models/unet.h"
#include "stages/denoising.h"
#include "stages/stage.h"

namespace loom::stages {

struct UnclipStageOptions {
  models::UNetOptions model;
  diffusion::DiffusionOptions diffusion;
  std::string clip = "";   // the CLIP export whose embeddings and text features it reads
  std::string prior = "";  // a prior export on the same CLIP: makes images from text
  int embed_tokens = 4;    // context tokens made from the image embedding
  double image_dropout = 0.1;
  double text_dropout = 0.5;
  int preview_steps = 50;
  double preview_cfg = 3.0;
  JudgedEvalOptions eval;

  static void Describe(config::Fields<UnclipStageOptions>& f);
};

class UnclipStage : public Stage, public TextToImage, public ImageVariation {
 public:
  UnclipStage(const UnclipStageOptions& options, const models::UNetConfig& config, int64_t image_size,
              std::shared_ptr<const diffusion::Process> diffusion, std::shared_ptr<Stage> clip, std::shared_ptr<Stage> prior,
              ImageSpec pixels);

  std::string kind() const override { return "unclip"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) override;
  nlohmann::ordered_json Describe() const override;
  double ForwardFlops(int64_t batch) const override;
  TextToImage* AsTextToImage() override { return prior_ ? this : nullptr; }
  ImageVariation* AsImageVariation() override { return this; }

  ImageSpec image_spec() const override { return pixels_; }
  absl::StatusOr<torch::Tensor> Generate(const std::vector<std::string>& prompts,
                                         const GenerateOptions& options) override;
  absl::StatusOr<torch::Tensor> Vary(const torch::Tensor& images, const GenerateOptions& options) override;

  // Images [B, C, S, S] in [-1, 1] from normalised image embeddings [B, D] and caption
  // features [B, L, W] with their mask [B, L], by DDIM with guidance against the image
  // embedding and the caption both dropped; row i's noise from (seed, i).
  torch::Tensor Decode(const torch::Tensor& image_embed, const torch::Tensor& context, const torch::Tensor& mask,
                       double cfg, int steps, uint64_t seed);

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  UnclipStageOptions options;
  models::UNetConfig config;
  int64_t image_size;
  models::UNet unet{nullptr};
  std::shared_ptr<const diffusion::Process> diffusion;  // diffusion.process

 private:
  torch::Device device() const { return unet->conv_in->weight.device(); }
  std::shared_ptr<Stage> clip_, prior_;  // frozen; prior_ may be null
  JointEmbedding* embedding_ = nullptr;
  TextEncoding* text_ = nullptr;
  torch::Tensor null_context_, null_mask_;  // CLIP's features of "" [1, L, W], [1, L]
  ImageSpec pixels_;
  JudgedEvaluation judged_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeUnclipStage(const StageInputs& inputs);

}  // namespace loom::stages

// DALL-E 2's diffusion prior (`stage.kind: prior`): from a caption's CLIP text embedding
// and the CLIP text tower's per-token encodings to the CLIP image embedding, trained on
// a cache that a CLIP export made (`loom data encode --with` it: clip_image, clip_text,
// text, text_mask); that export is the stage's frozen dependency (`stage.clip`), so the
// cache's producer is checked against it and sampling reads captions with its text
// tower. The diffusion runs on the L2-normalised image embedding scaled by sqrt(D) (unit
// variance per component) and the network predicts it (x0), under a uniform weight;
// `data.caption_dropout` of the captions become the learned null caption, for guidance.
// Sampling draws `stage.candidates` embeddings per caption and keeps the one closest to
// the caption's text embedding, as the paper does.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "diffusion/process.h"
#include "diffusion/options.h"
#include "models/options.h"
#include "models/prior.h"
#include "stages/stage.h"

namespace loom::stages {

struct PriorStageOptions {
  models::PriorOptions model;
  diffusion::DiffusionOptions diffusion{.prediction = "x0", .loss_weight = "uniform"};
  std::string clip = "";  // the CLIP export whose embeddings it maps
  int candidates = 2;
  int sample_steps = 64;
  double sample_cfg = 1.0;
  int64_t eval_limit = 500;  // test images of the evaluation at train.eval_every

  static void Describe(config::Fields<PriorStageOptions>& f);
};

class PriorStage : public Stage, public EmbeddingPrior {
 public:
  PriorStage(const PriorStageOptions& options, const models::PriorConfig& config,
             std::shared_ptr<const diffusion::Process> diffusion, std::shared_ptr<Stage> clip,
             double caption_dropout);

  std::string kind() const override { return "prior"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) override;
  double ForwardFlops(int64_t batch) const override { return models::PriorForwardFlops(config, batch); }
  nlohmann::ordered_json Describe() const override;
  EmbeddingPrior* AsEmbeddingPrior() override { return this; }

  int64_t embed_dim() const override { return config.embed_dim; }
  torch::Tensor PredictImageEmbeddings(const std::vector<std::string>& captions,
                                       const PriorSampleOptions& options) override;
  JointEmbedding* clip() override { return embedding_; }
  PriorSampleOptions default_sampling() const override {
    return {options.sample_cfg, options.sample_steps, options.candidates, 0};
  }

  // Normalised image embeddings [B, D] from text embeddings [B, D] and per-token
  // encodings [B, L, W] with their mask [B, L] (bool).
  torch::Tensor Sample(const torch::Tensor& text_embed, const torch::Tensor& tokens, const torch::Tensor& mask,
                       const PriorSampleOptions& options);

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  PriorStageOptions options;
  models::PriorConfig config;
  models::PriorNet net{nullptr};
  std::shared_ptr<const diffusion::Process> diffusion;  // diffusion.process

 private:
  std::shared_ptr<Stage> clip_;  // frozen
  JointEmbedding* embedding_ = nullptr;
  TextEncoding* text_ = nullptr;
  double caption_dropout_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakePriorStage(const StageInputs& inputs);

}  // namespace loom::stages

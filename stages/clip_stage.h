// The CLIP stage (`stage.kind: clip`): an image tower and a text tower trained together
// with a contrastive loss over the global batch, the first stage of DALL-E 2. Each rank
// gathers every rank's image and text embeddings with gradients (dist/gather.h), scores
// its own rows against all of them, and its targets are offset by its rank, so N ranks
// on slices of a batch compute the gradient one process computes on the whole batch
// (open_clip's local loss with gathered features).
//
// Identical captions: a dataset whose captions repeat (Fashion-MNIST has 60 distinct
// ones) puts many pairs with the same caption in a batch. The loss makes every pair whose
// caption has the same tokens a positive, the target spread evenly over them. Identical
// captions have identical embeddings, so this equals CLIP's one-positive loss in value and
// gradient (tests/mpi/clip_loss_test.cpp checks it); what it fixes is the reading: the
// in-batch accuracy counts any copy of the right caption as right. Captions that name the
// same class in other words stay negatives (docs/dalle2.md).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "data/tokenizer.h"
#include "models/clip.h"
#include "models/options.h"
#include "stages/stage.h"

namespace loom::stages {

struct ClipEvalOptions {
  int64_t limit = 2000;                // test images scored at each train.eval_every
  std::vector<std::string> templates;  // empty: the default templates

  static void Describe(config::Fields<ClipEvalOptions>& f);
};

struct ClipStageOptions {
  models::ClipOptions model;
  ClipEvalOptions eval;

  static void Describe(config::Fields<ClipStageOptions>& f);
};

// Embeddings [..., D] in float32, L2-normalised along the last axis: the space every
// CLIP face, the prior and the decoder work in.
torch::Tensor NormalizedEmbedding(const torch::Tensor& x);

// A key per caption row: equal keys, equal real tokens. int64 [B] of tokens [B, L] and
// mask [B, L].
torch::Tensor CaptionKeys(const torch::Tensor& tokens, const torch::Tensor& mask);

struct ContrastiveLoss {
  torch::Tensor loss;      // scalar: the mean over this rank's rows of both directions' cross-entropy, halved
  torch::Tensor accuracy;  // scalar: share of this rank's images whose best-scoring text is a positive
};

// CLIP's symmetric loss for this rank's normalised embeddings image, text [b, D] against
// every rank's (gathered with gradients, or with only the local block's: `gather_grad`
// false, for comparison), scaled by exp(logit_scale). `keys` [b] (CaptionKeys) make
// pairs with the same key positives; undefined: each pair alone is its own positive.
ContrastiveLoss ClipLoss(const torch::Tensor& image, const torch::Tensor& text, const torch::Tensor& keys,
                         const torch::Tensor& logit_scale, dist::ProcessGroup* group, bool gather_grad = true);

// Its export caches, per sample (`loom data encode --with` it): "clip_image" and
// "clip_text" [embed_dim], the normalised embeddings of the image and of its caption, and
// "text" [max_tokens, text width] with "text_mask" [max_tokens], the text tower's
// per-token features, as a frozen text encoder's cache holds them (what the prior and the
// decoder attend to).
class ClipStage : public Stage, public JointEmbedding, public TextEncoding, public CacheProducer {
 public:
  ClipStage(const ClipStageOptions& options, const models::ClipConfig& config,
            std::shared_ptr<const data::Tokenizer> tokenizer, ImageSpec images);

  std::string kind() const override { return "clip"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  void AfterStep(int64_t step) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) override;
  double ForwardFlops(int64_t batch) const override { return models::ClipForwardFlops(config, batch); }
  nlohmann::ordered_json Describe() const override;
  std::map<std::string, std::string> Assets() const override;
  JointEmbedding* AsJointEmbedding() override { return this; }
  TextEncoding* AsTextEncoding() override { return this; }
  CacheProducer* AsCacheProducer() override { return this; }

  ImageSpec image_spec() const override { return images_; }
  int64_t embed_dim() const override { return config.embed_dim; }
  torch::Tensor EmbedImages(const torch::Tensor& images) override;
  torch::Tensor EmbedTexts(const std::vector<std::string>& captions) override;
  double logit_scale() const override;

  int64_t context_dim() const override { return config.text.width; }
  int64_t max_tokens() const override { return config.max_tokens; }
  std::pair<torch::Tensor, torch::Tensor> EncodeText(const std::vector<std::string>& captions) override;

  std::vector<CacheField> CacheFields() const override;
  bool needs_pixels() const override { return true; }
  ImageSpec input_spec() const override { return images_; }
  std::map<std::string, torch::Tensor> EncodeBatch(const data::Batch& batch) override;

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  ClipStageOptions options;
  models::ClipConfig config;
  models::ClipModel model{nullptr};

 private:
  std::shared_ptr<const data::Tokenizer> tokenizer_;
  ImageSpec images_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeClipStage(const StageInputs& inputs);

}  // namespace loom::stages

// How well a diffusion prior predicts CLIP image embeddings from captions, as
// DALLE2-pytorch reports it, on a labelled dataset (a test split): for each image and its
// caption, the mean cosine of
//  - (the caption's text embedding, the real image embedding): what the prior starts from;
//  - (the predicted image embedding, the real one);
//  - (the predicted one, the real embedding of an image of another class): unrelated;
//  - (the real embedding, that of another real image of the same class): how close two
//    real images of what the caption names are, the bar a prediction should clear;
// and the zero-shot accuracy of the predicted embeddings against the class prompts,
// beside that of the real image embeddings.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "eval/zero_shot.h"

namespace loom::eval {

// Predicted image embeddings [B, D] (L2-normalised) of B captions.
using CaptionPrior = std::function<torch::Tensor(const std::vector<std::string>& captions)>;

struct PriorEvalOptions {
  std::string data;  // a labelled dataset (a test split)
  int64_t image_size = 32;  // as the CLIP model embeds them
  int64_t channels = 1;
  std::string fit = "pad";
  std::vector<std::string> templates;  // class prompts; empty: DefaultTemplates()
  int64_t limit = 1000;  // images; 0 = all
  int64_t batch = 250;
  uint64_t seed = 0;
  int workers = 1;
};

struct PriorEvalResult {
  double text_image = 0;
  double predicted_image = 0;
  double predicted_unrelated = 0;
  double same_class_images = 0;
  double zero_shot_predicted = 0;
  double zero_shot_real = 0;
  int64_t images = 0;
  double seconds = 0;
  nlohmann::ordered_json ToJson() const;
};

absl::StatusOr<PriorEvalResult> EvaluatePrior(const ImageEmbedder& embed_images, const TextEmbedder& embed_texts,
                                              const CaptionPrior& predict, const PriorEvalOptions& options);

// For each row, another row of the same label (same = true) or of another label, the
// next such one cyclically; -1 where there is none.
std::vector<int64_t> PairedRows(const torch::Tensor& labels, bool same);

}  // namespace loom::eval

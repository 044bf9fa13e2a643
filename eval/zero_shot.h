// Zero-shot classification and caption retrieval by a joint image-text embedding (a CLIP
// model), on a labelled dataset whose label names are the classes:
//  - each template renders one prompt per class ("a photo of {a_class}"); a class's
//    embedding is the mean of its prompts' normalised embeddings over the templates,
//    normalised again (CLIP's prompt ensembling), and an image is given the class of the
//    nearest one. Each template is also scored alone.
//  - retrieval: the distinct captions of the evaluated images are ranked for each image
//    by cosine; recall@k is the share of images whose own caption is among the first k.
//    Identical captions count once, so many images share each candidate.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::eval {

// [B, D] L2-normalised embeddings of images [B, C, H, W] in [-1, 1] / of captions.
using ImageEmbedder = std::function<torch::Tensor(const torch::Tensor& images)>;
using TextEmbedder = std::function<torch::Tensor(const std::vector<std::string>& captions)>;

struct ZeroShotOptions {
  std::string data;  // a labelled dataset (a test split)
  int64_t image_size = 32;  // as the model was trained: size, channels, fit
  int64_t channels = 1;
  std::string fit = "pad";
  std::vector<std::string> templates;  // empty: DefaultTemplates() of prompt_eval.h
  int64_t limit = 0;    // images to evaluate; 0 = all
  int64_t batch = 250;  // at most this many at once
  uint64_t seed = 0;    // which images, when limited
  int workers = 1;
};

struct ZeroShotResult {
  double accuracy = 0;  // with the templates' class embeddings averaged
  struct PerTemplate {
    std::string templ;
    double accuracy = 0;
  };
  std::vector<PerTemplate> templates;
  std::vector<std::string> classes;
  std::vector<double> per_class;  // of the averaged classifier
  double recall_at_1 = 0, recall_at_5 = 0;
  int64_t captions = 0;  // distinct captions ranked
  int64_t images = 0;
  double seconds = 0;
  nlohmann::ordered_json ToJson() const;
};

absl::StatusOr<ZeroShotResult> EvaluateZeroShot(const ImageEmbedder& embed_images, const TextEmbedder& embed_texts,
                                                const ZeroShotOptions& options);

// The class of each image embedding [B, D] against class embeddings [K, D] (argmax of
// the cosine), and the averaged, normalised class embeddings of prompts embedded per
// template ([T, K, D] -> [K, D]).
torch::Tensor NearestClass(const torch::Tensor& images, const torch::Tensor& classes);
torch::Tensor EnsembleClasses(const torch::Tensor& per_template);

}  // namespace loom::eval

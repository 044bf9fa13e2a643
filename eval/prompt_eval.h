// Prompt accuracy: for each class the judge knows and each prompt template, sample images
// from the class's prompt and ask the judge what they show. Reports the share judged to
// be the prompted class (overall, per template, per class) and the Fréchet distance
// between judge features of all samples and of the real test images, beside the same
// distance for as many real training images (the floor a perfect model would reach).
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <functional>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "eval/judge.h"

namespace loom::eval {

struct PromptEvalOptions {
  int64_t per_class = 20;  // samples per class and template
  int steps = 50;          // DDIM steps (reported; the sampler applies them)
  double cfg = 4.0;        // guidance scale (reported; the sampler applies it)
  uint64_t seed = 0;
  // "{class}" is replaced by the class name, "{a_class}" by it with "a"/"an" before it.
  std::vector<std::string> templates;  // empty: DefaultTemplates()
  int64_t batch = 100;                 // images sampled at once
};

// Wordings of the training captions and wordings they never used.
std::vector<std::string> DefaultTemplates();

// The prompt for `name` in `templ`.
std::string RenderTemplate(const std::string& templ, const std::string& name);

struct PromptEvalResult {
  struct PerTemplate {
    std::string templ;
    double accuracy = 0;
    std::vector<double> per_class;
  };
  std::vector<PerTemplate> templates;
  std::vector<std::string> classes;
  double prompt_accuracy = 0;    // over every sample
  std::vector<double> per_class;  // over every template
  double frechet = 0;             // samples vs real test images
  double frechet_floor = 0;       // real training images (as many) vs real test images
  int64_t samples = 0;
  double seconds = 0;

  nlohmann::ordered_json ToJson() const;
};

// Checks that the judge sees what the model makes (image size, channels, padding).
absl::Status CheckJudgeFits(const Judge& judge, int64_t image_size, int64_t channels, const std::string& fit);

// Images [B, C, H, W] in [-1, 1] for B prompts from the model under test, with its
// sampling settings (steps, guidance) bound; the same seed gives the same images.
using PromptSampler =
    std::function<absl::StatusOr<torch::Tensor>(const std::vector<std::string>& prompts, uint64_t seed)>;

absl::StatusOr<PromptEvalResult> EvaluatePrompts(const PromptSampler& sample, const Judge& judge,
                                                 const PromptEvalOptions& options);

}  // namespace loom::eval

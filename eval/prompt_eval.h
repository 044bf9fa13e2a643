// Prompt accuracy: for each class the judge knows and each prompt of a prompt set, sample
// images from the prompt and ask the judge what they show. Reports the share judged to be
// the prompted class (overall, per prompt group, per class, and per phrase when the
// prompts come from a phrase file) and the Fréchet distance between judge features of all
// samples and of the real test images, beside the same distance for as many real training
// images (the floor a perfect model would reach).
//
// The prompts form a PromptSet: a list of groups, each giving at most one prompt per class.
//  - Templates (the default): one group per template, named by the template, in which
//    every class c gets RenderTemplate(template, c).
//  - A phrase file (PromptEvalOptions::phrases): a JSON object mapping every class name of
//    the judge to a non-empty list of distinct phrases, e.g.
//      {"trousers": ["a pair of jeans", "slacks"], "bag": ["a handbag"], ...}
//    The phrases are the prompts, verbatim. Group k (named "phrase k", from 1) holds the
//    k-th phrase of each class that has at least k phrases, so with equal counts every
//    group covers every class; a class with fewer phrases is absent from the later groups
//    (its entry in such a group's per_class is NaN, null in JSON). Each phrase is also
//    reported on its own (PromptEvalResult::phrases, "phrases" in JSON).
// Every prompt is sampled per_class times, so a class gets per_class x (its prompts)
// samples; per-class and overall accuracies are over all samples of the class / of the set.
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
  int64_t per_class = 20;  // samples per class and prompt (template or phrase)
  int steps = 50;          // DDIM steps (reported; the sampler applies them)
  double cfg = 4.0;        // guidance scale (reported; the sampler applies it)
  uint64_t seed = 0;
  // "{class}" is replaced by the class name, "{a_class}" by it with "a"/"an" before it.
  std::vector<std::string> templates;  // empty: DefaultTemplates() (unless `phrases` is set)
  // Path of a phrase file (see above); when set, its phrases replace the templates, and
  // `templates` must be empty.
  std::string phrases;
  int64_t batch = 100;  // images sampled at once
};

// Wordings of the training captions and wordings they never used.
std::vector<std::string> DefaultTemplates();

// The prompt for `name` in `templ`.
std::string RenderTemplate(const std::string& templ, const std::string& name);

struct PromptSet {
  struct Group {
    std::string name;                  // the template, or "phrase k"
    std::vector<std::string> prompts;  // prompts[c]: class c's prompt; "" = class c absent
  };
  std::vector<std::string> classes;  // the judge's classes, in its order
  std::vector<Group> groups;
  bool from_phrases = false;  // report every prompt on its own
};

// One group per template; every class in every group.
PromptSet TemplatePromptSet(const std::vector<std::string>& templates, const std::vector<std::string>& classes);

// Reads the phrase file at `path` and checks it against `classes` (every class present,
// no other names, non-empty lists of distinct non-empty strings); errors name the file.
absl::StatusOr<PromptSet> ReadPhraseFile(const std::string& path, const std::vector<std::string>& classes);

// The prompt set `options` asks for: the phrase file, else the templates (or the defaults).
// Refuses a phrase file together with templates.
absl::StatusOr<PromptSet> BuildPromptSet(const PromptEvalOptions& options, const std::vector<std::string>& classes);

struct PromptEvalResult {
  struct PerTemplate {
    std::string templ;               // the group's name
    double accuracy = 0;             // over the group's samples
    std::vector<double> per_class;  // NaN for a class absent from the group
  };
  struct PerPhrase {
    std::string cls;
    std::string phrase;
    double accuracy = 0;
  };
  std::vector<PerTemplate> templates;
  std::vector<PerPhrase> phrases;  // a phrase set only: class by class, in file order
  std::vector<std::string> classes;
  double prompt_accuracy = 0;    // over every sample
  std::vector<double> per_class;  // over every prompt of the class
  double frechet = 0;             // samples vs real test images
  double frechet_floor = 0;       // real training images (as many per class as samples on average) vs test
  int64_t samples = 0;
  double seconds = 0;

  // {prompt_accuracy, frechet, frechet_floor, samples, seconds, per_class_accuracy,
  //  templates: [{template, prompt_accuracy, per_class}], and for a phrase set
  //  phrases: [{class, phrase, accuracy}]}.
  nlohmann::ordered_json ToJson() const;
};

// Checks that the judge sees what the model makes (image size, channels, padding).
absl::Status CheckJudgeFits(const Judge& judge, int64_t image_size, int64_t channels, const std::string& fit);

// Images [B, C, H, W] in [-1, 1] for B prompts from the model under test, with its
// sampling settings (steps, guidance) bound; the same seed gives the same images.
using PromptSampler =
    std::function<absl::StatusOr<torch::Tensor>(const std::vector<std::string>& prompts, uint64_t seed)>;

// Evaluates BuildPromptSet(options, judge classes).
absl::StatusOr<PromptEvalResult> EvaluatePrompts(const PromptSampler& sample, const Judge& judge,
                                                 const PromptEvalOptions& options);

// Evaluates `prompts` (their classes must be the judge's); options give per_class, seed, batch.
absl::StatusOr<PromptEvalResult> EvaluatePrompts(const PromptSampler& sample, const Judge& judge,
                                                 const PromptSet& prompts, const PromptEvalOptions& options);

}  // namespace loom::eval

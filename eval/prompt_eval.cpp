// Prompt accuracy and Fréchet distance of a model's samples (see prompt_eval.h).
#include "eval/prompt_eval.h"

#include <chrono>

#include "core/rng.h"
#include "eval/frechet.h"

namespace loom::eval {

std::vector<std::string> DefaultTemplates() {
  return {
      "a photo of {a_class}",          // a training wording
      "{class}",                       // a training wording (the bare name)
      "an illustration of {a_class}",  // never in the training captions
      "a drawing of {a_class}",        // never in the training captions
  };
}

std::string RenderTemplate(const std::string& templ, const std::string& name) {
  const bool vowel = !name.empty() && std::string("aeiou").find(name[0]) != std::string::npos;
  std::string out = templ;
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"{a_class}", (vowel ? "an " : "a ") + name},
                                   std::pair<std::string, std::string>{"{class}", name}}) {
    for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at + value.size())) {
      out.replace(at, key.size(), value);
    }
  }
  return out;
}

nlohmann::ordered_json PromptEvalResult::ToJson() const {
  nlohmann::ordered_json per_template = nlohmann::ordered_json::array();
  for (const PerTemplate& t : templates) {
    per_template.push_back({{"template", t.templ}, {"prompt_accuracy", t.accuracy}, {"per_class", t.per_class}});
  }
  nlohmann::ordered_json classes_json = nlohmann::ordered_json::object();
  for (size_t c = 0; c < classes.size(); ++c) classes_json[classes[c]] = per_class[c];
  return {{"prompt_accuracy", prompt_accuracy}, {"frechet", frechet},        {"frechet_floor", frechet_floor},
          {"samples", samples},                 {"seconds", seconds},        {"per_class_accuracy", classes_json},
          {"templates", per_template}};
}

absl::Status CheckJudgeFits(const Judge& judge, int64_t image_size, int64_t channels, const std::string& fit) {
  const eval::JudgeSpec& s = judge.spec();
  if (s.image_size != image_size || s.channels != channels || s.fit != fit) {
    return absl::InvalidArgumentError(
        "the judge sees " + std::to_string(s.image_size) + "x" + std::to_string(s.image_size) + " images with " +
        std::to_string(s.channels) + " channel(s) (fit " + s.fit + ") but the model makes " + std::to_string(image_size) +
        "x" + std::to_string(image_size) + " with " + std::to_string(channels) + " (fit " + fit +
        "); train a judge with 'loom eval classifier --image-size " + std::to_string(image_size) + " --fit " + fit + "'");
  }
  return absl::OkStatus();
}

absl::StatusOr<PromptEvalResult> EvaluatePrompts(const PromptSampler& sample, const Judge& judge,
                                                 const PromptEvalOptions& o) {
  if (o.per_class < 1 || o.steps < 1 || o.batch < 1) {
    return absl::InvalidArgumentError("prompt evaluation needs per_class, steps and batch >= 1");
  }
  const auto started = std::chrono::steady_clock::now();
  const std::vector<std::string> templates = o.templates.empty() ? DefaultTemplates() : o.templates;
  const std::vector<std::string>& classes = judge.spec().classes;
  const int64_t C = static_cast<int64_t>(classes.size());
  PromptEvalResult r;
  r.classes = classes;
  std::vector<int64_t> class_hits(C, 0);
  std::vector<torch::Tensor> features;
  for (size_t ti = 0; ti < templates.size(); ++ti) {
    // Rows: class c's prompt repeated per_class times, classes in order.
    const int64_t n = C * o.per_class;
    std::vector<std::string> prompts;
    torch::Tensor wanted = torch::empty({n}, torch::kLong);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = i / o.per_class;
      prompts.push_back(RenderTemplate(templates[ti], classes[c]));
      wanted[i] = c;
    }
    torch::Tensor predicted = torch::empty({n}, torch::kLong);
    for (int64_t from = 0; from < n; from += o.batch) {
      const int64_t b = std::min(o.batch, n - from);
      // Each chunk its own noise: seeded by (seed, template, chunk).
      const uint64_t seed = SeedFor(o.seed, ti, static_cast<uint64_t>(from));
      ASSIGN_OR_RETURN(torch::Tensor images,
                       sample(std::vector<std::string>(prompts.begin() + from, prompts.begin() + from + b), seed));
      images = images.to(torch::kCPU);
      features.push_back(judge.Features(images));
      predicted.narrow(0, from, b).copy_(judge.Predict(images));
    }
    PromptEvalResult::PerTemplate t;
    t.templ = templates[ti];
    const torch::Tensor hit = predicted.eq(wanted);
    t.accuracy = hit.to(torch::kFloat64).mean().item<double>();
    for (int64_t c = 0; c < C; ++c) {
      const int64_t hits = hit.narrow(0, c * o.per_class, o.per_class).sum().item<int64_t>();
      class_hits[c] += hits;
      t.per_class.push_back(static_cast<double>(hits) / static_cast<double>(o.per_class));
    }
    r.templates.push_back(std::move(t));
  }
  const int64_t per_class_total = o.per_class * static_cast<int64_t>(templates.size());
  int64_t all_hits = 0;
  for (int64_t c = 0; c < C; ++c) {
    all_hits += class_hits[c];
    r.per_class.push_back(static_cast<double>(class_hits[c]) / static_cast<double>(per_class_total));
  }
  r.samples = per_class_total * C;
  r.prompt_accuracy = static_cast<double>(all_hits) / static_cast<double>(r.samples);
  r.frechet = FrechetDistance(Stats(torch::cat(features)), judge.test_stats());
  r.frechet_floor = FrechetDistance(judge.TrainStats(per_class_total), judge.test_stats());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace loom::eval

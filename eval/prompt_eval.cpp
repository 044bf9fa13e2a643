// Prompt accuracy and Fréchet distance of a model's samples (see prompt_eval.h).
#include "eval/prompt_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/rng.h"
#include "core/strings.h"
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

namespace {

namespace fs = std::filesystem;

std::string Quoted(const std::string& s) { return nlohmann::json(s).dump(); }

std::string QuotedList(const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  for (const std::string& n : names) quoted.push_back(Quoted(n));
  return Join(quoted, ", ");
}

constexpr const char* kPhraseShape =
    "a phrase file is a JSON object mapping each class name of the judge to a list of phrases, e.g. "
    "{\"trousers\": [\"a pair of jeans\", \"slacks\"], \"bag\": [\"a purse\"], ...}";

}  // namespace

PromptSet TemplatePromptSet(const std::vector<std::string>& templates, const std::vector<std::string>& classes) {
  PromptSet set;
  set.classes = classes;
  for (const std::string& templ : templates) {
    PromptSet::Group g;
    g.name = templ;
    for (const std::string& name : classes) g.prompts.push_back(RenderTemplate(templ, name));
    set.groups.push_back(std::move(g));
  }
  return set;
}

absl::StatusOr<PromptSet> ReadPhraseFile(const std::string& path, const std::vector<std::string>& classes) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError("phrase file " + path + " does not exist or is not a file; " + kPhraseShape);
  }
  nlohmann::json j;
  {
    std::ifstream in(path);
    if (!in) return absl::PermissionDeniedError("phrase file " + path + " cannot be read");
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      std::string why = e.what();
      const size_t bracket = why.find("] ");
      if (why.rfind("[json.exception", 0) == 0 && bracket != std::string::npos) why = why.substr(bracket + 2);
      return absl::InvalidArgumentError("phrase file " + path + " is not JSON (" + why + "); " + kPhraseShape);
    }
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError("phrase file " + path + " holds a JSON " + std::string(j.type_name()) +
                                      ", not an object; " + kPhraseShape);
  }
  std::vector<std::vector<std::string>> lists(classes.size());
  for (const auto& [key, value] : j.items()) {
    const auto it = std::find(classes.begin(), classes.end(), key);
    if (it == classes.end()) {
      return absl::InvalidArgumentError("phrase file " + path + ": " + Quoted(key) +
                                        " is not a class of the judge; its classes are " + QuotedList(classes) +
                                        " (use these names as keys)");
    }
    const std::string where = "phrase file " + path + ": class " + Quoted(key);
    if (!value.is_array()) {
      return absl::InvalidArgumentError(where + " maps to a JSON " + std::string(value.type_name()) +
                                        ", not a list of phrases; write " + Quoted(key) + ": [\"a phrase\", ...]");
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(where + " has an empty list; give it at least one phrase");
    }
    std::vector<std::string>& list = lists[static_cast<size_t>(it - classes.begin())];
    for (size_t i = 0; i < value.size(); ++i) {
      if (!value[i].is_string() || value[i].get<std::string>().empty()) {
        return absl::InvalidArgumentError(where + ": phrase " + std::to_string(i + 1) + " (" + value[i].dump() +
                                          ") is not a non-empty string");
      }
      const std::string phrase = value[i].get<std::string>();
      if (std::find(list.begin(), list.end(), phrase) != list.end()) {
        return absl::InvalidArgumentError(where + " lists " + Quoted(phrase) + " twice; keep it once");
      }
      list.push_back(phrase);
    }
  }
  std::vector<std::string> missing;
  for (size_t c = 0; c < classes.size(); ++c) {
    if (lists[c].empty()) missing.push_back(classes[c]);
  }
  if (!missing.empty()) {
    const bool many = missing.size() > 1;
    return absl::InvalidArgumentError("phrase file " + path + " has no phrases for class" + (many ? "es " : " ") +
                                      QuotedList(missing) + "; every class the judge knows needs a list: add " +
                                      Quoted(missing[0]) + ": [\"a phrase\", ...]" +
                                      (many ? " and likewise for the others" : ""));
  }
  PromptSet set;
  set.classes = classes;
  set.from_phrases = true;
  size_t most = 0;
  for (const auto& list : lists) most = std::max(most, list.size());
  for (size_t k = 0; k < most; ++k) {
    PromptSet::Group g;
    g.name = "phrase " + std::to_string(k + 1);
    for (const auto& list : lists) g.prompts.push_back(k < list.size() ? list[k] : std::string());
    set.groups.push_back(std::move(g));
  }
  return set;
}

absl::StatusOr<PromptSet> BuildPromptSet(const PromptEvalOptions& o, const std::vector<std::string>& classes) {
  if (o.phrases.empty()) return TemplatePromptSet(o.templates.empty() ? DefaultTemplates() : o.templates, classes);
  if (!o.templates.empty()) {
    return absl::InvalidArgumentError("phrases (" + o.phrases +
                                      ") and templates exclude each other: the phrases replace the templates; "
                                      "pass --phrases or --template, not both");
  }
  return ReadPhraseFile(o.phrases, classes);
}

nlohmann::ordered_json PromptEvalResult::ToJson() const {
  nlohmann::ordered_json per_template = nlohmann::ordered_json::array();
  for (const PerTemplate& t : templates) {
    per_template.push_back({{"template", t.templ}, {"prompt_accuracy", t.accuracy}, {"per_class", t.per_class}});
  }
  nlohmann::ordered_json classes_json = nlohmann::ordered_json::object();
  for (size_t c = 0; c < classes.size(); ++c) classes_json[classes[c]] = per_class[c];
  nlohmann::ordered_json out = {{"prompt_accuracy", prompt_accuracy}, {"frechet", frechet},
                                {"frechet_floor", frechet_floor},     {"samples", samples},
                                {"seconds", seconds},                 {"per_class_accuracy", classes_json},
                                {"templates", per_template}};
  if (!phrases.empty()) {
    nlohmann::ordered_json per_phrase = nlohmann::ordered_json::array();
    for (const PerPhrase& p : phrases) {
      per_phrase.push_back({{"class", p.cls}, {"phrase", p.phrase}, {"accuracy", p.accuracy}});
    }
    out["phrases"] = per_phrase;
  }
  return out;
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
  ASSIGN_OR_RETURN(PromptSet prompts, BuildPromptSet(o, judge.spec().classes));
  return EvaluatePrompts(sample, judge, prompts, o);
}

absl::StatusOr<PromptEvalResult> EvaluatePrompts(const PromptSampler& sample, const Judge& judge,
                                                 const PromptSet& set, const PromptEvalOptions& o) {
  if (o.per_class < 1 || o.steps < 1 || o.batch < 1) {
    return absl::InvalidArgumentError("prompt evaluation needs per_class, steps and batch >= 1");
  }
  const std::vector<std::string>& classes = judge.spec().classes;
  const int64_t C = static_cast<int64_t>(classes.size());
  if (set.classes != classes || set.groups.empty()) {
    return absl::InvalidArgumentError("prompt evaluation needs prompts for the judge's classes (" +
                                      Join(classes, ", ") + ")");
  }
  for (const PromptSet::Group& g : set.groups) {
    if (static_cast<int64_t>(g.prompts.size()) != C) {
      return absl::InvalidArgumentError("prompt group '" + g.name + "' does not give one prompt per class");
    }
  }
  const auto started = std::chrono::steady_clock::now();
  PromptEvalResult r;
  r.classes = classes;
  std::vector<int64_t> class_hits(C, 0), class_samples(C, 0);
  // hit share of each (class, group) cell; NaN where the group lacks the class
  std::vector<std::vector<double>> cell(C, std::vector<double>(set.groups.size(), std::nan("")));
  std::vector<torch::Tensor> features;
  for (size_t gi = 0; gi < set.groups.size(); ++gi) {
    const PromptSet::Group& g = set.groups[gi];
    // Rows: each present class's prompt repeated per_class times, classes in order.
    std::vector<int64_t> present;
    for (int64_t c = 0; c < C; ++c) {
      if (!g.prompts[c].empty()) present.push_back(c);
    }
    if (present.empty()) continue;
    const int64_t n = static_cast<int64_t>(present.size()) * o.per_class;
    std::vector<std::string> prompts;
    torch::Tensor wanted = torch::empty({n}, torch::kLong);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = present[i / o.per_class];
      prompts.push_back(g.prompts[c]);
      wanted[i] = c;
    }
    torch::Tensor predicted = torch::empty({n}, torch::kLong);
    for (int64_t from = 0; from < n; from += o.batch) {
      const int64_t b = std::min(o.batch, n - from);
      // Each chunk its own noise: seeded by (seed, group, chunk).
      const uint64_t seed = SeedFor(o.seed, gi, static_cast<uint64_t>(from));
      ASSIGN_OR_RETURN(torch::Tensor images,
                       sample(std::vector<std::string>(prompts.begin() + from, prompts.begin() + from + b), seed));
      if (images.dim() != 4 || images.size(0) != b) {
        return absl::InternalError("the sampler returned " + std::to_string(images.dim() == 0 ? 0 : images.size(0)) +
                                   " images for " + std::to_string(b) + " prompts");
      }
      images = images.to(torch::kCPU);
      features.push_back(judge.Features(images));
      predicted.narrow(0, from, b).copy_(judge.Predict(images));
    }
    PromptEvalResult::PerTemplate t;
    t.templ = g.name;
    const torch::Tensor hit = predicted.eq(wanted);
    t.accuracy = hit.to(torch::kFloat64).mean().item<double>();
    t.per_class.assign(C, std::nan(""));
    for (size_t p = 0; p < present.size(); ++p) {
      const int64_t c = present[p];
      const int64_t hits = hit.narrow(0, static_cast<int64_t>(p) * o.per_class, o.per_class).sum().item<int64_t>();
      class_hits[c] += hits;
      class_samples[c] += o.per_class;
      t.per_class[c] = cell[c][gi] = static_cast<double>(hits) / static_cast<double>(o.per_class);
    }
    r.templates.push_back(std::move(t));
  }
  int64_t all_hits = 0;
  for (int64_t c = 0; c < C; ++c) {
    all_hits += class_hits[c];
    r.samples += class_samples[c];
    r.per_class.push_back(class_samples[c] > 0
                              ? static_cast<double>(class_hits[c]) / static_cast<double>(class_samples[c])
                              : std::nan(""));
    if (!set.from_phrases) continue;
    for (size_t gi = 0; gi < set.groups.size(); ++gi) {
      if (!set.groups[gi].prompts[c].empty()) r.phrases.push_back({classes[c], set.groups[gi].prompts[c], cell[c][gi]});
    }
  }
  r.prompt_accuracy = static_cast<double>(all_hits) / static_cast<double>(r.samples);
  r.frechet = FrechetDistance(Stats(torch::cat(features)), judge.test_stats());
  // As many real images per class as samples per class on average (exactly, for templates).
  r.frechet_floor = FrechetDistance(judge.TrainStats((r.samples + C / 2) / C), judge.test_stats());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace loom::eval

// Zero-shot classification and retrieval (see zero_shot.h).
#include "eval/zero_shot.h"

#include <chrono>
#include <map>

#include "eval/prompt_eval.h"       // DefaultTemplates, RenderTemplate
#include "eval/reconstruction.h"    // OpenEvalImages

namespace loom::eval {

torch::Tensor NearestClass(const torch::Tensor& images, const torch::Tensor& classes) {
  return torch::matmul(images, classes.t()).argmax(1);
}

torch::Tensor EnsembleClasses(const torch::Tensor& per_template) {
  const torch::Tensor mean = torch::nn::functional::normalize(
      per_template, torch::nn::functional::NormalizeFuncOptions().dim(-1)).mean(0);
  return torch::nn::functional::normalize(mean, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

nlohmann::ordered_json ZeroShotResult::ToJson() const {
  nlohmann::ordered_json j;
  j["accuracy"] = accuracy;
  nlohmann::ordered_json per_template = nlohmann::ordered_json::object();
  for (const auto& t : templates) per_template[t.templ] = t.accuracy;
  j["templates"] = per_template;
  nlohmann::ordered_json classes_json = nlohmann::ordered_json::object();
  for (size_t c = 0; c < classes.size(); ++c) classes_json[classes[c]] = per_class[c];
  j["per_class"] = classes_json;
  j["recall_at_1"] = recall_at_1;
  j["recall_at_5"] = recall_at_5;
  j["captions"] = captions;
  j["images"] = images;
  j["seconds"] = seconds;
  return j;
}

absl::StatusOr<ZeroShotResult> EvaluateZeroShot(const ImageEmbedder& embed_images, const TextEmbedder& embed_texts,
                                                const ZeroShotOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(EvalImages images, OpenEvalImages(o.data, o.image_size, o.channels, o.fit, o.limit, o.batch,
                                                    o.seed, o.workers));
  if (!images.has_labels || images.label_names.empty()) {
    return absl::InvalidArgumentError(o.data + " has no named labels; zero-shot classification needs a labelled "
                                      "dataset whose manifest names its classes (e.g. loom data fashion-mnist)");
  }
  ZeroShotResult r;
  r.classes = images.label_names;
  const int64_t K = static_cast<int64_t>(r.classes.size());
  const std::vector<std::string> templates = o.templates.empty() ? DefaultTemplates() : o.templates;
  for (const std::string& t : templates) {
    if (t.find("{class}") == std::string::npos && t.find("{a_class}") == std::string::npos) {
      return absl::InvalidArgumentError("template \"" + t + "\" names no class; put {class} or {a_class} in it");
    }
  }
  torch::NoGradGuard no_grad;
  // Class embeddings per template [T, K, D].
  std::vector<torch::Tensor> per_template;
  for (const std::string& t : templates) {
    std::vector<std::string> prompts;
    for (const std::string& c : r.classes) prompts.push_back(RenderTemplate(t, c));
    per_template.push_back(embed_texts(prompts).to(torch::kCPU, torch::kFloat32));
  }
  const torch::Tensor stacked = torch::stack(per_template);
  const torch::Tensor ensemble = EnsembleClasses(stacked);

  std::vector<torch::Tensor> embeddings, labels;
  std::vector<std::string> captions;
  for (int64_t done = 0; done + images.batch <= images.total; done += images.batch) {
    ASSIGN_OR_RETURN(data::Batch batch, images.loader->Next());
    embeddings.push_back(embed_images(batch.pixels).to(torch::kCPU, torch::kFloat32));
    labels.push_back(batch.labels.to(torch::kCPU, torch::kLong));
    captions.insert(captions.end(), batch.captions.begin(), batch.captions.end());
  }
  if (embeddings.empty()) return absl::InvalidArgumentError(o.data + " has no images to evaluate");
  const torch::Tensor embedded = torch::cat(embeddings), truth = torch::cat(labels);
  r.images = embedded.size(0);
  const auto share = [](const torch::Tensor& hits) { return hits.to(torch::kFloat64).mean().item<double>(); };
  const torch::Tensor predicted = NearestClass(embedded, ensemble);
  r.accuracy = share(predicted == truth);
  for (int64_t c = 0; c < K; ++c) {
    const torch::Tensor in_class = truth == c;
    r.per_class.push_back(in_class.any().item<bool>() ? share(predicted.masked_select(in_class) == c)
                                                      : std::numeric_limits<double>::quiet_NaN());
  }
  for (size_t t = 0; t < templates.size(); ++t) {
    r.templates.push_back({templates[t], share(NearestClass(embedded, stacked[t]) == truth)});
  }
  // Retrieval over the distinct captions.
  std::map<std::string, int64_t> index;
  std::vector<std::string> distinct;
  std::vector<int64_t> own(captions.size());
  for (size_t i = 0; i < captions.size(); ++i) {
    auto [it, added] = index.emplace(captions[i], static_cast<int64_t>(distinct.size()));
    if (added) distinct.push_back(captions[i]);
    own[i] = it->second;
  }
  r.captions = static_cast<int64_t>(distinct.size());
  std::vector<torch::Tensor> text_parts;
  for (size_t i = 0; i < distinct.size(); i += 256) {
    const std::vector<std::string> part(distinct.begin() + i, distinct.begin() + std::min(distinct.size(), i + 256));
    text_parts.push_back(embed_texts(part).to(torch::kCPU, torch::kFloat32));
  }
  const torch::Tensor texts = torch::cat(text_parts);
  const torch::Tensor own_t = torch::tensor(own, torch::kLong);
  const torch::Tensor scores = torch::matmul(embedded, texts.t());  // [N, captions]
  const torch::Tensor own_score = scores.gather(1, own_t.view({-1, 1}));
  const torch::Tensor rank = (scores > own_score).sum(1);  // captions ranked above the own one
  r.recall_at_1 = share(rank < 1);
  r.recall_at_5 = share(rank < 5);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace loom::eval

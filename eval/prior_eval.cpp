// The prior's evaluation (see prior_eval.h).
#include "eval/prior_eval.h"

#include <chrono>

#include "eval/prompt_eval.h"     // DefaultTemplates, RenderTemplate
#include "eval/reconstruction.h"  // OpenEvalImages

namespace loom::eval {

std::vector<int64_t> PairedRows(const torch::Tensor& labels, bool same) {
  const torch::Tensor l = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t n = l.size(0);
  const int64_t* v = l.data_ptr<int64_t>();
  std::vector<int64_t> out(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 1; k < n; ++k) {
      const int64_t j = (i + k) % n;
      if ((v[j] == v[i]) == same) {
        out[i] = j;
        break;
      }
    }
  }
  return out;
}

nlohmann::ordered_json PriorEvalResult::ToJson() const {
  return {{"cos_text_image", text_image},
          {"cos_predicted_image", predicted_image},
          {"cos_predicted_unrelated", predicted_unrelated},
          {"cos_same_class_images", same_class_images},
          {"zero_shot_predicted", zero_shot_predicted},
          {"zero_shot_real", zero_shot_real},
          {"zero_shot_ratio", zero_shot_real > 0 ? zero_shot_predicted / zero_shot_real : 0.0},
          {"images", images},
          {"seconds", seconds}};
}

absl::StatusOr<PriorEvalResult> EvaluatePrior(const ImageEmbedder& embed_images, const TextEmbedder& embed_texts,
                                              const CaptionPrior& predict, const PriorEvalOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(EvalImages images, OpenEvalImages(o.data, o.image_size, o.channels, o.fit, o.limit, o.batch,
                                                    o.seed, o.workers));
  if (!images.has_labels || images.label_names.empty()) {
    return absl::InvalidArgumentError(o.data + " has no named labels; the prior's evaluation needs a labelled "
                                      "dataset whose manifest names its classes (e.g. loom data fashion-mnist)");
  }
  torch::NoGradGuard no_grad;
  const std::vector<std::string> templates = o.templates.empty() ? DefaultTemplates() : o.templates;
  std::vector<torch::Tensor> per_template;
  for (const std::string& t : templates) {
    std::vector<std::string> prompts;
    for (const std::string& c : images.label_names) prompts.push_back(RenderTemplate(t, c));
    per_template.push_back(embed_texts(prompts).to(torch::kCPU, torch::kFloat32));
  }
  const torch::Tensor classes = EnsembleClasses(torch::stack(per_template));

  std::vector<torch::Tensor> real, text, predicted, labels;
  for (int64_t done = 0; done + images.batch <= images.total; done += images.batch) {
    ASSIGN_OR_RETURN(data::Batch batch, images.loader->Next());
    real.push_back(embed_images(batch.pixels).to(torch::kCPU, torch::kFloat32));
    text.push_back(embed_texts(batch.captions).to(torch::kCPU, torch::kFloat32));
    predicted.push_back(predict(batch.captions).to(torch::kCPU, torch::kFloat32));
    labels.push_back(batch.labels.to(torch::kCPU, torch::kLong));
  }
  if (real.empty()) return absl::InvalidArgumentError(o.data + " has no images to evaluate");
  const torch::Tensor r = torch::cat(real), t = torch::cat(text), p = torch::cat(predicted), y = torch::cat(labels);
  const auto mean_cos = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a * b).sum(1).to(torch::kFloat64).mean().item<double>();
  };
  const auto paired = [&](bool same) {
    std::vector<int64_t> rows = PairedRows(y, same);
    std::vector<int64_t> from, to;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i] < 0) continue;
      from.push_back(static_cast<int64_t>(i));
      to.push_back(rows[i]);
    }
    return std::make_pair(torch::tensor(from, torch::kLong), torch::tensor(to, torch::kLong));
  };
  PriorEvalResult res;
  res.images = r.size(0);
  res.text_image = mean_cos(t, r);
  res.predicted_image = mean_cos(p, r);
  const auto [unrelated_from, unrelated_to] = paired(false);
  res.predicted_unrelated = mean_cos(p.index_select(0, unrelated_from), r.index_select(0, unrelated_to));
  const auto [same_from, same_to] = paired(true);
  res.same_class_images = mean_cos(r.index_select(0, same_from), r.index_select(0, same_to));
  const auto accuracy = [&](const torch::Tensor& e) {
    return (NearestClass(e, classes) == y).to(torch::kFloat64).mean().item<double>();
  };
  res.zero_shot_predicted = accuracy(p);
  res.zero_shot_real = accuracy(r);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return res;
}

}  // namespace loom::eval

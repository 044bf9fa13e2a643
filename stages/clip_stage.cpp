// The CLIP stage (see clip_stage.h).
#include "stages/clip_stage.h"

#include <cmath>
#include <limits>
#include <set>

#include "dist/gather.h"
#include "dist/process_group.h"
#include "eval/image_grid.h"
#include "eval/prompt_eval.h"  // RenderTemplate
#include "eval/zero_shot.h"
#include "stages/autocast.h"
#include "stages/denoising.h"  // CaptionTokenizer, TokenizePrompts
#include "stages/registry.h"

namespace loom::stages {

void ClipEvalOptions::Describe(config::Fields<ClipEvalOptions>& f) {
  using O = ClipEvalOptions;
  f.Add("limit", &O::limit, "data.test images classified zero-shot at each train.eval_every").Rule(config::Positive());
  f.Add("templates", &O::templates, "class prompt templates ({class}, {a_class}); empty: the defaults");
}

void ClipStageOptions::Describe(config::Fields<ClipStageOptions>& f) {
  using O = ClipStageOptions;
  f.Add("model", &O::model, "the image tower (a ViT) and the text tower");
  f.Add("eval", &O::eval, "zero-shot evaluation on data.test every train.eval_every steps");
}

torch::Tensor NormalizedEmbedding(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x.to(torch::kFloat32), torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

torch::Tensor CaptionKeys(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const torch::Tensor ids = tokens.to(torch::kCPU, torch::kLong).contiguous();
  const torch::Tensor real = mask.to(torch::kCPU, torch::kBool).contiguous();
  const int64_t B = ids.size(0), L = ids.size(1);
  torch::Tensor keys = torch::empty({B}, torch::kLong);
  for (int64_t i = 0; i < B; ++i) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the real tokens' ids
    for (int64_t j = 0; j < L; ++j) {
      if (!real[i][j].item<bool>()) continue;
      uint64_t v = static_cast<uint64_t>(ids.data_ptr<int64_t>()[i * L + j]);
      for (int k = 0; k < 8; ++k, v >>= 8) h = (h ^ (v & 0xFF)) * 1099511628211ull;
    }
    keys[i] = static_cast<int64_t>(h);
  }
  return keys;
}

ContrastiveLoss ClipLoss(const torch::Tensor& image, const torch::Tensor& text, const torch::Tensor& keys,
                         const torch::Tensor& logit_scale, dist::ProcessGroup* group, bool gather_grad) {
  const auto gather = gather_grad ? dist::AllGatherWithGrad : dist::AllGatherLocalGrad;
  const torch::Tensor all_image = gather(group, image), all_text = gather(group, text);
  const int64_t b = image.size(0), n = all_image.size(0);
  const int64_t offset = group != nullptr && group->size() > 1 ? group->rank() * b : 0;
  const auto device = image.device();
  torch::Tensor positive;  // [b, n]: row i's positives among all rows
  if (keys.defined()) {
    const torch::Tensor all_keys = dist::AllGatherLocalGrad(group, keys.to(device));
    positive = keys.to(device).unsqueeze(1) == all_keys.unsqueeze(0);
  } else {
    const auto longs = torch::TensorOptions(torch::kLong).device(device);
    positive = torch::arange(n, longs).unsqueeze(0) == (torch::arange(b, longs) + offset).unsqueeze(1);
  }
  const torch::Tensor target = positive.to(torch::kFloat32) / positive.sum(1, true).to(torch::kFloat32);
  const torch::Tensor scale = logit_scale.clamp_max(models::ClipMaxLogitScale()).exp();
  const torch::Tensor by_image = scale * torch::matmul(image, all_text.t());  // [b, n]
  const torch::Tensor by_text = scale * torch::matmul(text, all_image.t());
  const auto cross_entropy = [&](const torch::Tensor& logits) {
    return -(target * torch::log_softmax(logits, 1)).sum(1).mean();
  };
  ContrastiveLoss r;
  r.loss = (cross_entropy(by_image) + cross_entropy(by_text)) / 2;
  r.accuracy = positive.gather(1, by_image.detach().argmax(1, true)).to(torch::kFloat32).mean();
  return r;
}

ClipStage::ClipStage(const ClipStageOptions& o, const models::ClipConfig& c,
                     std::shared_ptr<const data::Tokenizer> tokenizer, ImageSpec images)
    : options(o), config(c), tokenizer_(std::move(tokenizer)), images_(std::move(images)) {
  model = register_module("model", models::ClipModel(c));
}

std::vector<Trainable> ClipStage::Trainables() {
  Trainable t;
  t.name = "model";
  t.module = shared_from_this();
  t.optim = optim;
  t.ema = ema;
  // No weight decay on biases, norms, the class token and the temperature: every
  // parameter of fewer than two dimensions (CLIP's and open_clip's rule).
  std::set<std::string> vectors;
  for (const auto& p : named_parameters()) {
    if (p.value().dim() < 2) vectors.insert(p.key());
  }
  t.no_decay = [vectors](const std::string& name) { return vectors.count(name) > 0; };
  return {t};
}

DataNeeds ClipStage::Needs() const {
  DataNeeds needs;
  needs.pixels = true;
  needs.tokens = true;
  return needs;
}

LossResult ClipStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  TORCH_CHECK(batch.tokens.defined(), "the clip stage needs token ids (a tokenizer in the loader)");
  TORCH_CHECK(batch.pixels.dim() == 4, "the clip stage trains on images [B, C, H, W]; this batch has shape ",
              batch.pixels.sizes());
  const auto device = model->logit_scale.device();
  torch::Tensor image, text;
  {
    Autocast autocast(device, ctx.bf16);
    image = model->image->forward(batch.pixels.to(device));
    text = model->text->forward(batch.tokens.to(device), batch.mask.to(device));
  }
  const ContrastiveLoss r = ClipLoss(NormalizedEmbedding(image), NormalizedEmbedding(text), CaptionKeys(batch.tokens, batch.mask),
                                     model->logit_scale, ctx.group);
  const torch::Tensor scale = model->logit_scale.detach().clamp_max(models::ClipMaxLogitScale()).exp();
  return {r.loss, {{"acc", r.accuracy}, {"scale", scale}}};
}

void ClipStage::AfterStep(int64_t) {
  // CLIP clamps the temperature's logit at ln(100) after every step (a strategy that
  // keeps the parameter elsewhere leaves an empty tensor here; the loss clamps too).
  torch::NoGradGuard no_grad;
  if (model->logit_scale.numel() == 1) model->logit_scale.clamp_(0, models::ClipMaxLogitScale());
}

torch::Tensor ClipStage::EmbedImages(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  const auto device = model->logit_scale.device();
  return NormalizedEmbedding(model->image->forward(images.to(device))).to(torch::kCPU);
}

torch::Tensor ClipStage::EmbedTexts(const std::vector<std::string>& captions) {
  torch::NoGradGuard no_grad;
  const auto device = model->logit_scale.device();
  torch::Tensor mask;
  const torch::Tensor tokens = TokenizePrompts(*tokenizer_, captions, config.max_tokens, &mask);
  return NormalizedEmbedding(model->text->forward(tokens.to(device), mask.to(device))).to(torch::kCPU);
}

std::pair<torch::Tensor, torch::Tensor> ClipStage::EncodeText(const std::vector<std::string>& captions) {
  torch::NoGradGuard no_grad;
  const auto device = model->logit_scale.device();
  torch::Tensor mask;
  const torch::Tensor tokens = TokenizePrompts(*tokenizer_, captions, config.max_tokens, &mask);
  return {model->text->Encode(tokens.to(device), mask.to(device)).first.to(torch::kFloat32), mask.to(device)};
}

std::vector<CacheField> ClipStage::CacheFields() const {
  return {{"clip_image", {config.embed_dim}},
          {"clip_text", {config.embed_dim}},
          {"text", {config.max_tokens, config.text.width}},
          {"text_mask", {config.max_tokens}}};
}

std::map<std::string, torch::Tensor> ClipStage::EncodeBatch(const data::Batch& batch) {
  torch::NoGradGuard no_grad;
  const auto device = model->logit_scale.device();
  torch::Tensor mask;
  const torch::Tensor tokens = TokenizePrompts(*tokenizer_, batch.captions, config.max_tokens, &mask);
  const auto [features, embedding] = model->text->Encode(tokens.to(device), mask.to(device));
  const auto cpu = [](const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat32).contiguous(); };
  return {{"clip_image", cpu(EmbedImages(batch.pixels))},
          {"clip_text", cpu(NormalizedEmbedding(embedding))},
          {"text", cpu(features)},
          {"text_mask", cpu(mask)}};
}

double ClipStage::logit_scale() const {
  return std::exp(std::min(model->logit_scale.item<double>(), models::ClipMaxLogitScale()));
}

absl::Status ClipStage::Preview(const PreviewData& data, const std::string& png_path) {
  // One column per class: the batch's images that the model classifies zero-shot as it,
  // from "a photo of {a_class}" (or the batch's images in order when there are no classes).
  const torch::Tensor pixels = data.batch.pixels;
  if (!pixels.defined() || pixels.dim() != 4 || pixels.size(0) == 0) return absl::OkStatus();
  const int64_t K = static_cast<int64_t>(data.label_names.size());
  if (K == 0) return eval::WriteGrid(png_path, pixels, 8);
  std::vector<std::string> prompts;
  for (const std::string& name : data.label_names) prompts.push_back(eval::RenderTemplate("a photo of {a_class}", name));
  const torch::Tensor predicted = eval::NearestClass(EmbedImages(pixels), EmbedTexts(prompts));
  constexpr int64_t kRows = 4;
  torch::Tensor grid = torch::full({kRows * K, pixels.size(1), pixels.size(2), pixels.size(3)}, -1.0);
  std::vector<int64_t> filled(K, 0);
  for (int64_t i = 0; i < pixels.size(0); ++i) {
    const int64_t c = predicted[i].item<int64_t>();
    if (filled[c] < kRows) grid[filled[c]++ * K + c].copy_(pixels[i]);
  }
  return eval::WriteGrid(png_path, grid, static_cast<int>(K));
}

absl::StatusOr<nlohmann::ordered_json> ClipStage::Evaluate(const PreviewData& data) {
  if (data.data.test.empty()) return nlohmann::ordered_json::object();
  eval::ZeroShotOptions o;
  o.data = data.data.test;
  o.image_size = images_.size;
  o.channels = images_.channels;
  o.fit = images_.fit;
  o.templates = options.eval.templates;
  o.limit = options.eval.limit;
  o.seed = data.seed;
  const auto images = [this](const torch::Tensor& x) { return EmbedImages(x); };
  const auto texts = [this](const std::vector<std::string>& c) { return EmbedTexts(c); };
  ASSIGN_OR_RETURN(const eval::ZeroShotResult r, eval::EvaluateZeroShot(images, texts, o));
  return nlohmann::ordered_json{{"zero_shot", r.accuracy}, {"recall_at_1", r.recall_at_1}, {"recall_at_5", r.recall_at_5}};
}

nlohmann::ordered_json ClipStage::Describe() const {
  const models::TextEncoderOptions& t = config.text;
  return {{"image_size", config.image_size},
          {"channels", config.channels},
          {"fit", images_.fit},
          {"patch", config.patch},
          {"width", config.width},
          {"depth", config.depth},
          {"heads", config.heads},
          {"embed_dim", config.embed_dim},
          {"max_tokens", config.max_tokens},
          {"text", {{"width", t.width}, {"depth", t.depth}, {"heads", t.heads}, {"vocab", t.vocab}}}};
}

std::map<std::string, std::string> ClipStage::Assets() const { return {{"tokenizer.model", tokenizer_->serialized()}}; }

absl::StatusOr<std::shared_ptr<Stage>> MakeClipStage(const StageInputs& in) {
  const ClipStageOptions& o = *in.options->As<ClipStageOptions>();
  ASSIGN_OR_RETURN(std::shared_ptr<const data::Tokenizer> tokenizer,
                   CaptionTokenizer(in.assets, in.data, o.model.text.vocab));
  ASSIGN_OR_RETURN(models::ClipConfig config,
                   models::ResolveClip(o.model, in.data.image_size, in.data.channels, in.data.max_tokens));
  auto stage = std::make_shared<ClipStage>(o, config, std::move(tokenizer),
                                           ImageSpec{in.data.image_size, in.data.channels, in.data.fit});
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

// The diffusion prior stage (see prior_stage.h).
#include "stages/prior_stage.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "eval/image_grid.h"
#include "eval/prior_eval.h"
#include "stages/autocast.h"
#include "stages/clip_stage.h"  // NormalizedEmbedding
#include "stages/denoising.h"  // DrawTraining, DropsCaption, SamplingNoise, DescribeDiffusion
#include "stages/registry.h"

namespace loom::stages {
void PriorStageOptions::Describe(config::Fields<PriorStageOptions>& f) {
  using O = PriorStageOptions;
  f.Add("model", &O::model, "the causal Transformer");
  f.Add("diffusion", &O::diffusion, "diffusion process and objective (the paper predicts x0)");
  f.Add("clip", &O::clip,
        "the CLIP export (frozen) whose embeddings the prior maps; data.train is a cache made by 'loom data encode "
        "--with' it");
  f.Add("candidates", &O::candidates,
        "image embeddings drawn per caption at sampling; the one closest to the caption's text embedding is kept")
      .Rule(config::Between(1, 64));
  f.Add("sample_steps", &O::sample_steps, "DDIM steps at sampling").Rule(config::Positive());
  f.Add("sample_cfg", &O::sample_cfg, "guidance scale at sampling (1 = none)").Rule(config::AtLeast(0));
  f.Add("eval_limit", &O::eval_limit, "data.test images of the evaluation at train.eval_every").Rule(config::Positive());
}

PriorStage::PriorStage(const PriorStageOptions& o, const models::PriorConfig& c,
                       std::shared_ptr<const diffusion::Process> d,
                       std::shared_ptr<Stage> clip, double caption_dropout)
    : options(o), config(c), diffusion(std::move(d)), clip_(std::move(clip)), caption_dropout_(caption_dropout) {
  net = register_module("net", models::PriorNet(c));
  embedding_ = clip_->AsJointEmbedding();
  text_ = clip_->AsTextEncoding();
}

std::vector<Trainable> PriorStage::Trainables() { return WholeStage(shared_from_this(), optim, ema); }

DataNeeds PriorStage::Needs() const {
  DataNeeds needs;
  needs.caches = {"clip_image", "clip_text", "text", "text_mask"};
  for (const std::string& c : needs.caches) needs.cache_producers[c] = "clip";
  return needs;
}

LossResult PriorStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  const auto device = net->query.device();
  const double root_d = std::sqrt(static_cast<double>(config.embed_dim));
  const torch::Tensor x0 = NormalizedEmbedding(batch.caches.at("clip_image")) * root_d;
  const TrainingDraws d = DrawTraining(x0, 0.0, batch.ids, ctx.seed, ctx.step, *diffusion);
  const int64_t B = x0.size(0);
  torch::Tensor dropped = torch::zeros({B}, torch::kBool);
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    dropped[i] = DropsCaption(ctx.seed, ctx.step, static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]), caption_dropout_);
  }
  const torch::Tensor text_embed = batch.caches.at("clip_text").to(device);
  const torch::Tensor tokens = batch.caches.at("text").to(device);
  const torch::Tensor mask = (batch.caches.at("text_mask") > 0.5).to(device);
  const torch::Tensor drop = dropped.to(device);
  Autocast autocast(device, ctx.bf16);
  const diffusion::Denoiser model = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    return net->forward(x_t, t, text_embed, tokens, mask, drop);
  };
  const torch::Tensor losses =
      diffusion->training_losses(model, d.x0.to(device), d.t.to(device), d.noise.to(device)).to(torch::kFloat32);
  return {losses.mean(), {}};
}

torch::Tensor PriorStage::Sample(const torch::Tensor& text_embed, const torch::Tensor& tokens,
                                 const torch::Tensor& mask, const PriorSampleOptions& o) {
  torch::NoGradGuard no_grad;
  const auto device = net->query.device();
  const int64_t B = text_embed.size(0), K = o.candidates, D = config.embed_dim;
  // Every caption K times in a row; row r's noise from (seed, r).
  const torch::Tensor te = text_embed.to(device).repeat_interleave(K, 0);
  const torch::Tensor tk = tokens.to(device).repeat_interleave(K, 0);
  const torch::Tensor mk = mask.to(device, torch::kBool).repeat_interleave(K, 0);
  const auto bools = torch::TensorOptions(torch::kBool).device(device);
  const torch::Tensor keep = torch::zeros({B * K}, bools), drop = torch::ones({B * K}, bools);
  const diffusion::Denoiser cond = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return net->forward(x, t, te, tk, mk, keep);
  };
  const diffusion::Denoiser uncond = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return net->forward(x, t, te, tk, mk, drop);
  };
  const diffusion::Denoiser model = o.cfg == 1.0 ? cond : diffusion::Guided(cond, uncond, o.cfg);
  const torch::Tensor noise = SamplingNoise(B * K, D, 1, o.seed).view({B * K, D});
  const torch::Tensor x = diffusion->Sample(model, noise.to(device), {.steps = o.steps, .clip_x0 = false});
  const torch::Tensor candidates = NormalizedEmbedding(x).view({B, K, D});
  const torch::Tensor score = (candidates * NormalizedEmbedding(text_embed.to(device)).unsqueeze(1)).sum(-1);  // [B, K]
  const torch::Tensor best = score.argmax(1);
  return candidates.index({torch::arange(B, best.options()), best}).to(torch::kCPU);
}

torch::Tensor PriorStage::PredictImageEmbeddings(const std::vector<std::string>& captions,
                                                 const PriorSampleOptions& o) {
  const auto [tokens, mask] = text_->EncodeText(captions);
  return Sample(embedding_->EmbedTexts(captions), tokens, mask, o);
}

absl::Status PriorStage::Preview(const PreviewData& data, const std::string& png_path) {
  // The cosine of each predicted image embedding (rows: the preview batch's captions, by
  // label) with each real image embedding (columns): bright blocks on the diagonal when
  // the prior predicts embeddings of the right class.
  const data::Batch& b = data.batch;
  if (!b.caches.count("clip_image")) return absl::InvalidArgumentError("the preview batch has no clip_image cache");
  const int64_t n = std::min<int64_t>(16, b.caches.at("clip_image").size(0));
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (b.labels.defined()) {
    const torch::Tensor labels = b.labels.to(torch::kCPU, torch::kLong);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return labels[x].item<int64_t>() < labels[y].item<int64_t>(); });
  }
  const torch::Tensor rows = torch::tensor(order, torch::kLong);
  const auto pick = [&](const std::string& name) { return b.caches.at(name).index_select(0, rows); };
  const torch::Tensor predicted =
      Sample(pick("clip_text"), pick("text"), pick("text_mask") > 0.5,
             {options.sample_cfg, options.sample_steps, options.candidates, data.seed});
  const torch::Tensor cosine = torch::matmul(predicted, NormalizedEmbedding(pick("clip_image")).t());  // [n, n]
  // Stretched from [lowest, highest] to black..white: the embeddings of one CLIP model
  // have mostly positive cosines.
  const torch::Tensor lo = cosine.min(), hi = cosine.max();
  const torch::Tensor shade = (cosine - lo) / (hi - lo).clamp_min(1e-6) * 2 - 1;
  constexpr int64_t kCell = 8;
  const torch::Tensor picture =
      shade.repeat_interleave(kCell, 0).repeat_interleave(kCell, 1).view({1, 1, n * kCell, n * kCell});
  return eval::WriteGrid(png_path, picture, 1);
}

absl::StatusOr<nlohmann::ordered_json> PriorStage::Evaluate(const PreviewData& data) {
  if (data.data.test.empty()) return nlohmann::ordered_json::object();
  eval::PriorEvalOptions o;
  o.data = data.data.test;
  const ImageSpec spec = embedding_->image_spec();
  o.image_size = spec.size;
  o.channels = spec.channels;
  o.fit = spec.fit;
  o.limit = options.eval_limit;
  o.seed = data.seed;
  const PriorSampleOptions sampling{options.sample_cfg, options.sample_steps, options.candidates, data.seed};
  ASSIGN_OR_RETURN(
      const eval::PriorEvalResult r,
      eval::EvaluatePrior([this](const torch::Tensor& x) { return embedding_->EmbedImages(x); },
                          [this](const std::vector<std::string>& c) { return embedding_->EmbedTexts(c); },
                          [&](const std::vector<std::string>& c) { return PredictImageEmbeddings(c, sampling); }, o));
  return nlohmann::ordered_json{{"cos_predicted_image", r.predicted_image},
                                {"cos_same_class_images", r.same_class_images},
                                {"zero_shot_predicted", r.zero_shot_predicted},
                                {"zero_shot_real", r.zero_shot_real}};
}

nlohmann::ordered_json PriorStage::Describe() const {
  return {{"embed_dim", config.embed_dim},
          {"text_width", config.text_width},
          {"max_tokens", config.max_tokens},
          {"width", config.width},
          {"depth", config.depth},
          {"heads", config.heads},
          {"diffusion", DescribeDiffusion(options.diffusion)},
          {"caption_dropout", caption_dropout_},
          {"candidates", options.candidates},
          {"sample_steps", options.sample_steps},
          {"sample_cfg", options.sample_cfg}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakePriorStage(const StageInputs& in) {
  const PriorStageOptions& o = *in.options->As<PriorStageOptions>();
  if (o.clip.empty()) {
    return absl::InvalidArgumentError(
        "stage.clip is empty: a prior maps the embeddings of one CLIP model; name its export (stage.clip: "
        "runs/exports/clip) and train on a cache made by 'loom data encode --with' it");
  }
  const auto it = in.dependencies.find("clip");
  if (it == in.dependencies.end() || it->second->AsJointEmbedding() == nullptr ||
      it->second->AsTextEncoding() == nullptr) {
    return absl::InvalidArgumentError("stage.clip: " + o.clip + " is not loaded as a CLIP model");
  }
  models::PriorConfig c;
  c.embed_dim = it->second->AsJointEmbedding()->embed_dim();
  c.text_width = it->second->AsTextEncoding()->context_dim();
  c.max_tokens = it->second->AsTextEncoding()->max_tokens();
  c.width = o.model.width;
  c.depth = o.model.depth;
  c.heads = o.model.heads;
  ASSIGN_OR_RETURN(std::shared_ptr<const diffusion::Process> process, diffusion::MakeProcess(o.diffusion));
  auto stage = std::make_shared<PriorStage>(o, c, std::move(process), it->second, in.data.caption_dropout);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

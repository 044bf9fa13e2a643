// The unCLIP decoder stage (see unclip_stage.h).
#include "stages/unclip_stage.h"

#include <algorithm>

#include "core/rng.h"
#include "eval/image_grid.h"
#include "stages/autocast.h"
#include "stages/clip_stage.h"  // NormalizedEmbedding
#include "stages/registry.h"

namespace loom::stages {
namespace {

// Whether sample `id` trains at `step` without its image embedding (coin `salt`).
bool Drops(uint64_t seed, uint64_t salt, int64_t step, uint64_t id, double share) {
  SplitMix64 coin(SeedFor(seed ^ salt, static_cast<uint64_t>(step), id));
  return coin.Uniform() < share;
}

}  // namespace

void UnclipStageOptions::Describe(config::Fields<UnclipStageOptions>& f) {
  using O = UnclipStageOptions;
  f.Add("model", &O::model, "the U-Net (its embed_dim is the CLIP embedding's; leave it and extra_in_channels at 0)");
  f.Add("diffusion", &O::diffusion, "diffusion process and objective");
  f.Add("clip", &O::clip,
        "the CLIP export (frozen) whose image embeddings and text features condition the decoder; data.train is a "
        "cache made by 'loom data encode --with' it");
  f.Add("prior", &O::prior,
        "a prior export trained on the same CLIP: with it the decoder makes images from text (loom sample, loom "
        "eval prompts, stage.eval); empty: it decodes image embeddings only (variations, reconstructions)");
  f.Add("embed_tokens", &O::embed_tokens, "context tokens made from the image embedding").Rule(config::Between(0, 64));
  f.Add("image_dropout", &O::image_dropout, "share of samples trained without their image embedding")
      .Rule(config::InHalfOpen(0, 1));
  f.Add("text_dropout", &O::text_dropout, "share of samples trained without their caption").Rule(config::InHalfOpen(0, 1));
  f.Add("preview_steps", &O::preview_steps, "DDIM steps of the preview").Rule(config::Positive());
  f.Add("preview_cfg", &O::preview_cfg, "guidance scale of the preview").Rule(config::AtLeast(0));
  f.Add("eval", &O::eval, "judged evaluation through stage.prior every train.eval_every steps");
}

UnclipStage::UnclipStage(const UnclipStageOptions& o, const models::UNetConfig& c, int64_t size,
                         std::shared_ptr<const diffusion::Process> d, std::shared_ptr<Stage> clip, std::shared_ptr<Stage> prior,
                         ImageSpec pixels)
    : options(o),
      config(c),
      image_size(size),
      diffusion(std::move(d)),
      clip_(std::move(clip)),
      prior_(std::move(prior)),
      pixels_(std::move(pixels)),
      judged_(o.eval, pixels_) {
  embedding_ = clip_->AsJointEmbedding();
  text_ = clip_->AsTextEncoding();
  auto [context, mask] = text_->EncodeText({""});
  null_context_ = context.to(torch::kCPU);
  null_mask_ = mask.to(torch::kCPU);
  unet = register_module("unet", models::UNet(c));
}

std::vector<Trainable> UnclipStage::Trainables() { return WholeStage(shared_from_this(), optim, ema); }

DataNeeds UnclipStage::Needs() const {
  DataNeeds needs;
  needs.pixels = true;
  needs.caches = {"clip_image", "text", "text_mask"};
  for (const std::string& c : needs.caches) needs.cache_producers[c] = "clip";
  return needs;
}

LossResult UnclipStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  const TrainingDraws d = DrawTraining(batch.pixels, 0.0, batch.ids, ctx.seed, ctx.step, *diffusion);
  const int64_t B = d.x0.size(0);
  torch::Tensor embed = NormalizedEmbedding(batch.caches.at("clip_image")).clone();
  torch::Tensor context = batch.caches.at("text").clone();
  torch::Tensor mask = batch.caches.at("text_mask") > 0.5;
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    const uint64_t id = static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]);
    if (Drops(ctx.seed, 0x494D47ull, ctx.step, id, options.image_dropout)) embed[i].zero_();
    if (Drops(ctx.seed, 0x545854ull, ctx.step, id, options.text_dropout)) {
      context[i].copy_(null_context_[0]);
      mask[i].copy_(null_mask_[0]);
    }
  }
  const torch::Device dev = device();
  embed = embed.to(dev);
  context = context.to(dev);
  mask = mask.to(dev);
  Autocast autocast(dev, ctx.bf16);
  const diffusion::Denoiser denoiser = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return unet->forward(x, t, context, mask, embed, {});
  };
  const torch::Tensor losses =
      diffusion->training_losses(denoiser, d.x0.to(dev), d.t.to(dev), d.noise.to(dev)).to(torch::kFloat32);
  return {losses.mean(), {}};
}

torch::Tensor UnclipStage::Decode(const torch::Tensor& image_embed, const torch::Tensor& context,
                                  const torch::Tensor& mask, double cfg, int steps, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const torch::Device dev = device();
  const int64_t B = image_embed.size(0);
  const torch::Tensor embed = NormalizedEmbedding(image_embed).to(dev), ctx = context.to(dev), m = mask.to(dev, torch::kBool);
  const diffusion::Denoiser cond = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return unet->forward(x, t, ctx, m, embed, {});
  };
  diffusion::Denoiser model = cond;
  const torch::Tensor null_embed = torch::zeros_like(embed);
  const torch::Tensor null_ctx = null_context_.expand({B, -1, -1}).to(dev);
  const torch::Tensor null_m = null_mask_.expand({B, -1}).to(dev);
  if (cfg != 1.0) {
    const diffusion::Denoiser uncond = [&](const torch::Tensor& x, const torch::Tensor& t) {
      return unet->forward(x, t, null_ctx, null_m, null_embed, {});
    };
    model = diffusion::Guided(cond, uncond, cfg);
  }
  const torch::Tensor noise = SamplingNoise(B, config.out_channels, image_size, seed);
  return diffusion->Sample(model, noise.to(dev), {.steps = steps, .clip_x0 = true}).clamp(-1, 1);
}

absl::StatusOr<torch::Tensor> UnclipStage::Generate(const std::vector<std::string>& prompts, const GenerateOptions& o) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to generate from");
  if (!prior_) {
    return absl::FailedPreconditionError("this decoder makes images from CLIP image embeddings; to make them from "
                                         "text, train it with stage.prior naming a prior export of the same CLIP");
  }
  EmbeddingPrior* prior = prior_->AsEmbeddingPrior();
  PriorSampleOptions ps = prior->default_sampling();
  ps.seed = Mix64(o.seed ^ 0x505249ull);
  const torch::Tensor embeds = prior->PredictImageEmbeddings(prompts, ps);
  auto [context, mask] = text_->EncodeText(prompts);
  return Decode(embeds, context, mask, o.cfg, o.steps, o.seed).to(torch::kCPU);
}

absl::StatusOr<torch::Tensor> UnclipStage::Vary(const torch::Tensor& images, const GenerateOptions& o) {
  if (images.dim() != 4 || images.size(1) != pixels_.channels || images.size(2) != pixels_.size ||
      images.size(3) != pixels_.size) {
    return absl::InvalidArgumentError("this decoder varies images [B, " + std::to_string(pixels_.channels) + ", " +
                                      std::to_string(pixels_.size) + ", " + std::to_string(pixels_.size) + "], not " +
                                      c10::str(images.sizes()));
  }
  const torch::Tensor embeds = embedding_->EmbedImages(images);
  const int64_t B = images.size(0);
  return Decode(embeds, null_context_.expand({B, -1, -1}), null_mask_.expand({B, -1}), o.cfg, o.steps, o.seed)
      .to(torch::kCPU);
}

absl::Status UnclipStage::Preview(const PreviewData& data, const std::string& png_path) {
  // Rows: real images, then the decoder's images from their CLIP image embeddings and
  // captions (unCLIP reconstructions).
  const data::Batch& b = data.batch;
  const int64_t n = std::min<int64_t>(8, b.pixels.size(0));
  if (n == 0) return absl::OkStatus();
  const torch::Tensor out =
      Decode(b.caches.at("clip_image").narrow(0, 0, n), b.caches.at("text").narrow(0, 0, n),
             b.caches.at("text_mask").narrow(0, 0, n) > 0.5, options.preview_cfg, options.preview_steps, data.seed);
  return eval::WriteGrid(png_path, torch::cat({b.pixels.narrow(0, 0, n).to(torch::kCPU), out.to(torch::kCPU)}),
                         static_cast<int>(n));
}

absl::StatusOr<nlohmann::ordered_json> UnclipStage::Evaluate(const PreviewData& data) {
  if (!prior_) return nlohmann::ordered_json::object();  // refused at launch when asked for
  return judged_.Run(*this, data);
}

double UnclipStage::ForwardFlops(int64_t batch) const {
  return models::UNetForwardFlops(config, image_size, batch, text_->max_tokens());
}

nlohmann::ordered_json UnclipStage::Describe() const {
  return {{"image_size", image_size},
          {"channels", pixels_.channels},
          {"fit", pixels_.fit},
          {"model_channels", config.model_channels},
          {"channel_mult", config.channel_mult},
          {"num_res_blocks", config.num_res_blocks},
          {"attention_resolutions", config.attention_resolutions},
          {"context_dim", config.context_dim},
          {"embed_dim", config.embed_dim},
          {"embed_tokens", config.embed_tokens},
          {"diffusion", DescribeDiffusion(options.diffusion)},
          {"image_dropout", options.image_dropout},
          {"text_dropout", options.text_dropout}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeUnclipStage(const StageInputs& in) {
  const UnclipStageOptions& o = *in.options->As<UnclipStageOptions>();
  if (o.clip.empty()) {
    return absl::InvalidArgumentError(
        "stage.clip is empty: the decoder reads the image embeddings and text features of one CLIP model; name its "
        "export and train on a cache made by 'loom data encode --with' it");
  }
  if (o.model.extra_in_channels != 0 || o.model.embed_dim != 0) {
    return absl::InvalidArgumentError("the unclip stage sets its own conditioning inputs: leave "
                                      "stage.model.extra_in_channels and stage.model.embed_dim at 0");
  }
  const auto clip = in.dependencies.find("clip");
  if (clip == in.dependencies.end() || clip->second->AsJointEmbedding() == nullptr) {
    return absl::InvalidArgumentError("stage.clip: " + o.clip + " is not loaded as a CLIP model");
  }
  std::shared_ptr<Stage> prior;
  if (!o.prior.empty()) {
    const auto it = in.dependencies.find("prior");
    if (it == in.dependencies.end() || it->second->AsEmbeddingPrior() == nullptr) {
      return absl::InvalidArgumentError("stage.prior: " + o.prior + " is not loaded as a diffusion prior");
    }
    JointEmbedding* its = it->second->AsEmbeddingPrior()->clip();
    JointEmbedding* ours = clip->second->AsJointEmbedding();
    if (its->embed_dim() != ours->embed_dim()) {
      return absl::InvalidArgumentError("stage.prior: " + o.prior + " predicts embeddings of width " +
                                        std::to_string(its->embed_dim()) + " but stage.clip " + o.clip + " gives " +
                                        std::to_string(ours->embed_dim()) +
                                        "; the prior must be trained on the decoder's CLIP");
    }
    // The same CLIP gives the same embedding of any caption, bit for bit.
    const std::vector<std::string> probe = {"a photo of a probe"};
    if (!torch::equal(its->EmbedTexts(probe), ours->EmbedTexts(probe))) {
      return absl::InvalidArgumentError("stage.prior: " + o.prior + " was trained on another CLIP model than stage.clip " +
                                        o.clip + "; train the prior on the cache of the decoder's CLIP export");
    }
    prior = it->second;
  }
  RETURN_IF_ERROR(CheckJudgeNamed(o.eval, in.train.eval_every));
  if (in.train.eval_every > 0 && !prior) {
    return absl::InvalidArgumentError("train.eval_every is set but stage.prior is empty: the decoder is judged on "
                                      "images made from text through a prior; name one or set train.eval_every: 0");
  }
  const int64_t context_dim = clip->second->AsTextEncoding()->context_dim();
  ASSIGN_OR_RETURN(models::UNetConfig config, models::ResolveUNet(o.model, in.data.channels, in.data.channels,
                                                                  in.data.image_size, context_dim));
  config.embed_dim = clip->second->AsJointEmbedding()->embed_dim();
  config.embed_tokens = o.embed_tokens;
  ASSIGN_OR_RETURN(std::shared_ptr<const diffusion::Process> process, diffusion::MakeProcess(o.diffusion));
  auto stage = std::make_shared<UnclipStage>(o, config, in.data.image_size, std::move(process), clip->second,
                                             std::move(prior),
                                             ImageSpec{in.data.image_size, in.data.channels, in.data.fit});
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

// The text-to-video DiT stage (see video_dit_stage.h).
#include "stages/video_dit_stage.h"

#include <filesystem>

#include "core/rng.h"
#include "data/manifest.h"
#include "eval/gif.h"
#include "stages/autocast.h"
#include "stages/registry.h"

namespace loom::stages {

VideoDiTStageOptions::VideoDiTStageOptions() {
  diffusion.process = "flow";  // the video recipe of Open-Sora and its successors
  model.patch = 1;
}

void VideoDiTStageOptions::Describe(config::Fields<VideoDiTStageOptions>& f) {
  using O = VideoDiTStageOptions;
  f.Add("model", &O::model, "the DiT (patch: latent cells per token side) and its text encoder");
  f.Add("attention", &O::attention,
        "full: every block attends over all space-time tokens; factorized: per frame, then over time")
      .Rule(config::OneOf({"full", "factorized"}));
  f.Add("diffusion", &O::diffusion, "diffusion process and objective (default: rectified flow)");
  f.Add("vae", &O::vae, "a video_vae export (frozen): data.train is a cache made by 'loom data encode --with' it");
  f.Add("frame_buckets", &O::frame_buckets,
        "latent frame counts a step may train on (1 = single images; each at most the cached clips'); empty: "
        "whole clips");
  f.Add("bucket_weights", &O::bucket_weights, "relative weight of each bucket; empty: equal");
  f.Add("caption_noise", &O::caption_noise, "share of training captions that get one or two random tokens inserted")
      .Rule(config::InHalfOpen(0, 1));
  f.Add("preview_steps", &O::preview_steps, "sampling steps of the previews").Rule(config::Positive());
  f.Add("preview_cfg", &O::preview_cfg, "guidance scale of the previews").Rule(config::AtLeast(0));
}

VideoDiTStage::VideoDiTStage(const VideoDiTStageOptions& o, const models::VideoDiTConfig& c, int tokens,
                             std::shared_ptr<const diffusion::Process> d, std::shared_ptr<const data::Tokenizer> tokenizer,
                             std::shared_ptr<Stage> vae, int64_t latent_frames, double caption_dropout)
    : options(o),
      config(c),
      max_tokens(tokens),
      diffusion(std::move(d)),
      tokenizer_(std::move(tokenizer)),
      vae_(std::move(vae)),
      latent_frames_(latent_frames),
      caption_dropout_(caption_dropout) {
  text = register_module("text", models::TextEncoder(o.model.text, max_tokens));
  dit = register_module("dit", models::VideoDiT(c));
  video_ = vae_->AsVideoAutoencoder();
}

std::vector<Trainable> VideoDiTStage::Trainables() { return WholeStage(shared_from_this(), optim, ema); }

DataNeeds VideoDiTStage::Needs() const {
  DataNeeds needs;
  needs.tokens = true;
  needs.caches = {"latents"};
  needs.cache_producers = {{"latents", "vae"}};
  return needs;
}

ImageSpec VideoDiTStage::image_spec() const { return video_->image_spec(); }

int64_t VideoDiTStage::frames() const { return 1 + (latent_frames_ - 1) * video_->temporal_factor(); }

absl::Status VideoDiTStage::CheckFrames(int64_t n) const {
  RETURN_IF_ERROR(video_->CheckFrames(n));
  if (n > frames()) {
    return absl::InvalidArgumentError("this model was trained on clips of up to " + std::to_string(frames()) +
                                      " frames; ask for at most that many");
  }
  return absl::OkStatus();
}

int64_t VideoDiTStage::BucketFrames(uint64_t seed, int64_t step) const {
  const std::vector<int>& buckets = options.frame_buckets;
  if (buckets.empty()) return latent_frames_;
  double total = 0;
  for (size_t i = 0; i < buckets.size(); ++i) total += options.bucket_weights.empty() ? 1.0 : options.bucket_weights[i];
  // One draw per (seed, step): every rank, and a resumed run, takes the same bucket.
  SplitMix64 draw(SeedFor(seed ^ 0x4255434Bull, static_cast<uint64_t>(step), 0));
  double u = draw.Uniform() * total;
  for (size_t i = 0; i < buckets.size(); ++i) {
    u -= options.bucket_weights.empty() ? 1.0 : options.bucket_weights[i];
    if (u < 0) return buckets[i];
  }
  return buckets.back();
}

diffusion::Denoiser VideoDiTStage::Bind(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const torch::Tensor context = text->forward(tokens, mask);  // [B, L, Dc]
  return [this, context, mask](const torch::Tensor& x, const torch::Tensor& t) {
    return dit->forward(x, t, context, mask);
  };
}

LossResult VideoDiTStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  TORCH_CHECK(batch.tokens.defined(), "the video_dit stage needs token ids (a tokenizer in the loader)");
  const int64_t frames = BucketFrames(ctx.seed, ctx.step);
  // The first `frames` latent frames: by causality, the latents of the clip's first
  // 1 + (frames - 1) s frames.
  const torch::Tensor source = batch.caches.at("latents").narrow(2, 0, frames);  // [B, 2z, t, h, w]
  const TrainingDraws d =
      DrawTraining(source, /*latent_scale=*/1.0, batch.ids, ctx.seed, ctx.step, *diffusion, dit->tokens(frames));
  const int64_t z = video_->z_channels();
  const torch::Tensor x0 =
      (d.x0 - video_->latent_shift().view({1, z, 1, 1, 1})) * video_->latent_scale().view({1, z, 1, 1, 1});
  auto [tokens, mask] = TrainingCaptions(batch, ctx.seed, ctx.step, caption_dropout_, options.caption_noise,
                                         tokenizer_->vocab_size());
  Autocast autocast(device(), ctx.bf16);
  const torch::Tensor losses = diffusion->training_losses(Bind(tokens.to(device()), mask.to(device())),
                                                          x0.to(device()), d.t.to(device()), d.noise.to(device()));
  return {losses.to(torch::kFloat32).mean(),
          {{"frames", torch::full({}, static_cast<double>(frames), torch::kFloat32)}}};
}

torch::Tensor VideoDiTStage::Sample(const torch::Tensor& tokens, const torch::Tensor& mask, double cfg, int steps,
                                    uint64_t seed, int64_t latent_frames) {
  torch::NoGradGuard no_grad;
  torch::Tensor null_tokens = tokens.clone(), null_mask = mask.clone();
  EmptyCaption(null_tokens, null_mask);
  const diffusion::Denoiser cond = Bind(tokens.to(device()), mask.to(device()));
  const diffusion::Denoiser model =
      cfg == 1.0 ? cond : diffusion::Guided(cond, Bind(null_tokens.to(device()), null_mask.to(device())), cfg);
  const int64_t B = tokens.size(0), side = config.dit.image_size;
  torch::Tensor noise = torch::empty({B, config.dit.channels, latent_frames, side, side});
  for (int64_t i = 0; i < B; ++i) {  // row i's noise from (seed, i), as the image stages draw it
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed, 0x53414d50ull, static_cast<uint64_t>(i)));
    noise[i].copy_(torch::randn(noise[i].sizes(), gen));
  }
  return diffusion->Sample(model, noise.to(device()),
                           {.steps = steps, .clip_x0 = false, .tokens = dit->tokens(latent_frames)});
}

absl::StatusOr<torch::Tensor> VideoDiTStage::GenerateClips(const std::vector<std::string>& prompts,
                                                           const GenerateOptions& o, int64_t n) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to generate from");
  RETURN_IF_ERROR(CheckFrames(n));
  torch::NoGradGuard no_grad;
  torch::Tensor mask;
  const torch::Tensor tokens = TokenizePrompts(*tokenizer_, prompts, max_tokens, &mask);
  const int64_t latent_frames = 1 + (n - 1) / video_->temporal_factor(), z = video_->z_channels();
  const torch::Tensor x = Sample(tokens, mask, o.cfg, o.steps, o.seed, latent_frames).to(torch::kCPU);
  const torch::Tensor latents =
      x / video_->latent_scale().view({1, z, 1, 1, 1}) + video_->latent_shift().view({1, z, 1, 1, 1});
  return video_->DecodeClips(latents).clamp(-1, 1).to(torch::kCPU);  // [B, T, C, H, W]
}

absl::Status VideoDiTStage::Preview(const PreviewData& data, const std::string& png_path) {
  // The first captions of the preview batch, one clip each: a strip and a GIF of them all.
  std::vector<std::string> prompts;
  for (size_t i = 0; i < data.batch.captions.size() && i < 8; ++i) prompts.push_back(data.batch.captions[i]);
  if (prompts.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const torch::Tensor clips,
                   GenerateClips(prompts, {options.preview_cfg, options.preview_steps, data.seed}, frames()));
  RETURN_IF_ERROR(eval::WriteStrip(png_path, clips, 2));
  const std::string gif = std::filesystem::path(png_path).replace_extension(".gif").string();
  return eval::WriteGif(gif, eval::TileClips(clips, 4), 12, 3);
}

// A step takes one frame bucket: the expected FLOPs over the buckets by their weights, so
// a measurement over many steps (loom bench step) divides by what was computed.
double VideoDiTStage::ForwardFlops(int64_t batch) const {
  const std::vector<int>& buckets = options.frame_buckets;
  if (buckets.empty()) return models::VideoDiTForwardFlops(config, batch, latent_frames_, max_tokens);
  double total = 0, flops = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const double w = options.bucket_weights.empty() ? 1.0 : options.bucket_weights[i];
    total += w;
    flops += w * models::VideoDiTForwardFlops(config, batch, buckets[i], max_tokens);
  }
  return flops / total;
}

nlohmann::ordered_json VideoDiTStage::Describe() const {
  const models::DiTConfig& d = config.dit;
  const models::TextEncoderOptions& t = text->options;
  return {{"latent_size", d.image_size},
          {"latent_channels", d.channels},
          {"latent_frames", latent_frames_},
          {"frames", frames()},
          {"tokens_per_clip", dit->tokens(latent_frames_)},
          {"patch", d.patch},
          {"width", d.width},
          {"depth", d.depth},
          {"heads", d.heads},
          {"mlp_ratio", d.mlp_ratio},
          {"attention", options.attention},
          {"context_dim", d.context_dim},
          {"max_tokens", max_tokens},
          {"text", {{"width", t.width}, {"depth", t.depth}, {"heads", t.heads}, {"vocab", t.vocab}}},
          {"diffusion", DescribeDiffusion(options.diffusion)},
          {"frame_buckets", options.frame_buckets},
          {"output", {{"image_size", image_spec().size}, {"channels", image_spec().channels}, {"frames", frames()}}},
          {"caption_dropout", caption_dropout_},
          {"caption_noise", options.caption_noise}};
}

std::map<std::string, std::string> VideoDiTStage::Assets() const {
  return {{"tokenizer.model", tokenizer_->serialized()}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeVideoDiTStage(const StageInputs& in) {
  const VideoDiTStageOptions& o = *in.options->As<VideoDiTStageOptions>();
  if (o.vae.empty()) {
    return absl::InvalidArgumentError("stage.vae is empty; the video_dit stage denoises the latents of a video_vae "
                                      "export: name it, and set data.train to its cache ('loom data encode --with')");
  }
  const auto it = in.dependencies.find("vae");
  if (it == in.dependencies.end() || it->second->AsVideoAutoencoder() == nullptr) {
    return absl::InvalidArgumentError("stage.vae: " + o.vae + " is not loaded as a video VAE");
  }
  VideoAutoencoder* video = it->second->AsVideoAutoencoder();
  // The clips' frame count is data.frames (an export reads it back from its config).
  const int64_t frames = in.data.frames;
  if (frames < 2) {
    return absl::InvalidArgumentError("data.frames is " + std::to_string(frames) +
                                      "; set it to the frame count of the clips data.train caches");
  }
  if (const absl::Status s = video->CheckFrames(frames); !s.ok()) {
    return absl::InvalidArgumentError("data.frames: " + std::string(s.message()));
  }
  const int64_t latent_frames = 1 + (frames - 1) / video->temporal_factor();
  const std::filesystem::path manifest_file = std::filesystem::path(in.data.train) / "manifest.json";
  if (!in.data.train.empty() && std::filesystem::exists(manifest_file)) {
    ASSIGN_OR_RETURN(const data::Manifest manifest, data::ReadManifest(in.data.train));
    if (const data::CacheSpec* c = manifest.FindCache("latents"); c != nullptr && c->shape.size() == 4 &&
                                                                   c->shape[1] != latent_frames) {
      return absl::InvalidArgumentError("data.frames is " + std::to_string(frames) + " (" +
                                        std::to_string(latent_frames) + " latent frames) but " + in.data.train +
                                        " caches " + std::to_string(c->shape[1]) +
                                        " latent frames per clip; set data.frames to its clips' frame count");
    }
  }
  if (!o.bucket_weights.empty() && o.bucket_weights.size() != o.frame_buckets.size()) {
    return absl::InvalidArgumentError("stage.bucket_weights has " + std::to_string(o.bucket_weights.size()) +
                                      " weights for " + std::to_string(o.frame_buckets.size()) +
                                      " stage.frame_buckets; give one per bucket or none");
  }
  for (size_t i = 0; i < o.frame_buckets.size(); ++i) {
    if (o.frame_buckets[i] < 1 || o.frame_buckets[i] > latent_frames) {
      return absl::InvalidArgumentError("stage.frame_buckets: " + std::to_string(o.frame_buckets[i]) +
                                        " latent frames; each bucket must be in [1, " + std::to_string(latent_frames) +
                                        "] (the cached clips' latent frames)");
    }
    if (!o.bucket_weights.empty() && !(o.bucket_weights[i] > 0)) {
      return absl::InvalidArgumentError("stage.bucket_weights must be positive");
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const data::Tokenizer> tokenizer,
                   CaptionTokenizer(in.assets, in.data, o.model.text.vocab));
  const ImageSpec images = video->image_spec();
  const int64_t side = images.size / video->spatial_factor();
  models::VideoDiTConfig config;
  ASSIGN_OR_RETURN(config.dit, models::ResolveDiT(o.model, side, video->z_channels()));
  config.factorized = o.attention == "factorized";
  if (config.dit.width % 16 != 0) {
    return absl::InvalidArgumentError("stage.model.width " + std::to_string(config.dit.width) +
                                      " must be divisible by 16 (3-D sin-cos positions)");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const diffusion::Process> process, diffusion::MakeProcess(o.diffusion));
  auto stage = std::make_shared<VideoDiTStage>(o, config, in.data.max_tokens, std::move(process), std::move(tokenizer),
                                               it->second, latent_frames, in.data.caption_dropout);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

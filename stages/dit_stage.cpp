// The DiT stage (see dit_stage.h).
#include "stages/dit_stage.h"

#include "core/rng.h"
#include "stages/autocast.h"
#include "stages/registry.h"

namespace loom::stages {

void DiTStageOptions::Describe(config::Fields<DiTStageOptions>& f) {
  using O = DiTStageOptions;
  f.Add("model", &O::model, "the DiT and its text encoder");
  f.Add("diffusion", &O::diffusion, "diffusion process and objective");
  f.Add("vae", &O::vae, kVaeOptionDoc);
  f.Add("caption_noise", &O::caption_noise,
        "share of training captions that get one or two random tokens inserted (robustness to words the "
        "captions never use)")
      .Rule(config::InHalfOpen(0, 1));
  f.Add("preview_steps", &O::preview_steps, "DDIM steps of the preview grids").Rule(config::Positive());
  f.Add("preview_cfg", &O::preview_cfg, "guidance scale of the preview grids").Rule(config::AtLeast(0));
  f.Add("eval", &O::eval, "judged evaluation every train.eval_every steps");
}

DiTStage::DiTStage(const DiTStageOptions& o, const models::DiTConfig& dit_config,
                   const models::TextEncoderOptions& text_options, int tokens,
                   std::shared_ptr<const diffusion::Process> d,
                   std::shared_ptr<const data::Tokenizer> tokenizer, std::shared_ptr<Stage> vae,
                   double caption_dropout, ImageSpec pixels)
    : options(o),
      config(dit_config),
      max_tokens(tokens),
      diffusion(std::move(d)),
      tokenizer_(std::move(tokenizer)),
      vae_(std::move(vae)),
      caption_dropout_(caption_dropout),
      pixels_(std::move(pixels)),
      judged_(o.eval, pixels_) {
  text = register_module("text", models::TextEncoder(text_options, max_tokens));
  dit = register_module("dit", models::DiT(dit_config));
  if (vae_) autoencoder_ = vae_->AsAutoencoder();
}

std::vector<Trainable> DiTStage::Trainables() {
  return WholeStage(shared_from_this(), optim, ema);
}

DataNeeds DiTStage::Needs() const {
  DataNeeds needs;
  needs.tokens = true;
  if (autoencoder_ != nullptr) {
    needs.caches = {"latents"};
    needs.cache_producers = {{"latents", "vae"}};
  } else {
    needs.pixels = true;
  }
  return needs;
}

diffusion::Denoiser DiTStage::Bind(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const torch::Tensor context = text->forward(tokens, mask);  // [B, L, Dc]
  return [this, context, mask](const torch::Tensor& x, const torch::Tensor& t) {
    return dit->forward(x, t, context, mask);
  };
}

torch::Tensor DiTStage::Losses(const data::Batch& batch, uint64_t seed, int64_t step, bool bf16) {
  TORCH_CHECK(batch.tokens.defined(), "the DiT stage needs token ids (a tokenizer in the loader)");
  const bool latent = autoencoder_ != nullptr;
  // A latent sample is the posterior's mean and log-variance; the draw from it happens
  // here, per sample and step, as the noise does.
  const TrainingDraws d = DrawTraining(latent ? batch.caches.at("latents") : batch.pixels,
                                       latent ? autoencoder_->latent_scale() : 0.0, batch.ids, seed, step,
                                       *diffusion, patch_tokens());
  auto [tokens, mask] = TrainingCaptions(batch, seed, step, caption_dropout_, options.caption_noise,
                                        tokenizer_->vocab_size());
  const auto device = dit->pos_embed.device();
  Autocast autocast(device, bf16);
  return diffusion->training_losses(Bind(tokens.to(device), mask.to(device)), d.x0.to(device), d.t.to(device),
                                   d.noise.to(device)).to(torch::kFloat32);  // [B]
}

LossResult DiTStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  return {Losses(batch, ctx.seed, ctx.step, ctx.bf16).mean(), {}};
}

torch::Tensor DiTStage::Sample(const torch::Tensor& tokens, const torch::Tensor& mask, double cfg, int steps,
                               uint64_t seed) {
  torch::NoGradGuard no_grad;
  const auto device = dit->pos_embed.device();
  torch::Tensor null_tokens = tokens.clone(), null_mask = mask.clone();
  EmptyCaption(null_tokens, null_mask);
  const diffusion::Denoiser cond = Bind(tokens.to(device), mask.to(device));
  const diffusion::Denoiser model =
      cfg == 1.0 ? cond : diffusion::Guided(cond, Bind(null_tokens.to(device), null_mask.to(device)), cfg);
  const int64_t B = tokens.size(0);
  const torch::Tensor noise = SamplingNoise(B, config.channels, config.image_size, seed);
  // Pixels live in [-1, 1]; scaled latents have unit spread and are not clipped.
  const bool latent = autoencoder_ != nullptr;
  const torch::Tensor x =
      diffusion->Sample(model, noise.to(device), {.steps = steps, .clip_x0 = !latent, .tokens = patch_tokens()});
  return latent ? x : x.clamp(-1, 1);
}

absl::StatusOr<torch::Tensor> DiTStage::Generate(const std::vector<std::string>& prompts,
                                                 const GenerateOptions& o) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to generate from");
  torch::NoGradGuard no_grad;
  torch::Tensor mask;
  const torch::Tensor tokens = TokenizePrompts(*tokenizer_, prompts, max_tokens, &mask);
  const torch::Tensor x = Sample(tokens, mask, o.cfg, o.steps, o.seed);
  if (autoencoder_ == nullptr) return x.to(torch::kCPU);
  return autoencoder_->Decode(x / autoencoder_->latent_scale()).clamp(-1, 1).to(torch::kCPU);
}

absl::Status DiTStage::Preview(const PreviewData& data, const std::string& png_path) {
  return PreviewPrompts(*this, data, {options.preview_cfg, options.preview_steps, data.seed}, png_path);
}

absl::StatusOr<nlohmann::ordered_json> DiTStage::Evaluate(const PreviewData& data) { return judged_.Run(*this, data); }

nlohmann::ordered_json DiTStage::Describe() const {
  const models::TextEncoderOptions& t = text->options;
  nlohmann::ordered_json d = {
      {"image_size", config.image_size},
      {"channels", config.channels},
      {"patch", config.patch},
      {"width", config.width},
      {"depth", config.depth},
      {"heads", config.heads},
      {"mlp_ratio", config.mlp_ratio},
      {"context_dim", config.context_dim},
      {"max_tokens", max_tokens},
      {"text", {{"width", t.width}, {"depth", t.depth}, {"heads", t.heads}, {"vocab", t.vocab}}},
      {"diffusion", DescribeDiffusion(options.diffusion)},
      {"space", autoencoder_ != nullptr ? "latent" : "pixel"},
      {"output", {{"image_size", pixels_.size}, {"channels", pixels_.channels}, {"fit", pixels_.fit}}},
      {"caption_dropout", caption_dropout_},
      {"caption_noise", options.caption_noise}};
  return d;
}

std::map<std::string, std::string> DiTStage::Assets() const { return {{"tokenizer.model", tokenizer_->serialized()}}; }

absl::StatusOr<std::shared_ptr<Stage>> MakeDiTStage(const StageInputs& in) {
  const DiTStageOptions& o = *in.options->As<DiTStageOptions>();
  ASSIGN_OR_RETURN(std::shared_ptr<const data::Tokenizer> tokenizer,
                   CaptionTokenizer(in.assets, in.data, o.model.text.vocab));
  RETURN_IF_ERROR(CheckJudgeNamed(o.eval, in.train.eval_every));
  ASSIGN_OR_RETURN(DenoisedSpace space, ResolveDenoisedSpace(in, o.vae));
  ASSIGN_OR_RETURN(models::DiTConfig config, models::ResolveDiT(o.model, space.size, space.channels));
  ASSIGN_OR_RETURN(std::shared_ptr<const diffusion::Process> process, diffusion::MakeProcess(o.diffusion));
  auto stage = std::make_shared<DiTStage>(o, config, o.model.text, in.data.max_tokens, std::move(process),
                                          std::move(tokenizer), std::move(space.vae), in.data.caption_dropout,
                                          space.images);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

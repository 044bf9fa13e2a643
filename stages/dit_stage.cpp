// The DiT stage (see dit_stage.h).
#include "stages/dit_stage.h"

#include "core/rng.h"
#include "eval/image_grid.h"
#include "eval/prompt_eval.h"
#include "stages/autocast.h"
#include "stages/registry.h"

namespace loom::stages {

void DiTEvalOptions::Describe(config::Fields<DiTEvalOptions>& f) {
  using O = DiTEvalOptions;
  f.Add("judge", &O::judge, "judge directory made by 'loom eval classifier' (needed when train.eval_every > 0)");
  f.Add("per_class", &O::per_class, "samples per class and template").Rule(config::Positive());
  f.Add("steps", &O::steps, "DDIM steps of the evaluation samples").Rule(config::Positive());
  f.Add("cfg", &O::cfg, "guidance scale of the evaluation samples").Rule(config::AtLeast(0));
  f.Add("templates", &O::templates, "prompt templates ({class}, {a_class}); empty: the defaults");
}

void DiTStageOptions::Describe(config::Fields<DiTStageOptions>& f) {
  using O = DiTStageOptions;
  f.Add("model", &O::model, "the DiT and its text encoder");
  f.Add("diffusion", &O::diffusion, "diffusion process and objective");
  f.Add("vae", &O::vae,
        "a VAE export (frozen): train on its latents (data.train made by 'loom data encode --with' it) and "
        "sample through its decoder; empty: train on pixels");
  f.Add("caption_noise", &O::caption_noise,
        "share of training captions that get one or two random tokens inserted (robustness to words the "
        "captions never use)")
      .Rule(config::InHalfOpen(0, 1));
  f.Add("preview_steps", &O::preview_steps, "DDIM steps of the preview grids").Rule(config::Positive());
  f.Add("preview_cfg", &O::preview_cfg, "guidance scale of the preview grids").Rule(config::AtLeast(0));
  f.Add("eval", &O::eval, "judged evaluation every train.eval_every steps");
}

void EmptyCaption(torch::Tensor tokens, torch::Tensor mask) {
  tokens.fill_(data::Tokenizer::kPad);
  tokens.select(1, 0).fill_(data::Tokenizer::kStart);
  mask.fill_(false);
  mask.select(1, 0).fill_(true);
}

void InsertNoiseTokens(torch::Tensor tokens, torch::Tensor mask, int64_t vocab, SplitMix64& rng) {
  const int64_t L = tokens.size(0);
  int64_t* ids = tokens.data_ptr<int64_t>();
  bool* real = mask.data_ptr<bool>();
  int64_t n = 0;
  while (n < L && real[n]) ++n;
  if (vocab <= data::Tokenizer::kStart + 1) return;
  const int inserts = 1 + static_cast<int>(rng.Below(2));
  for (int k = 0; k < inserts && n < L; ++k) {
    const int64_t at = 1 + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(n)));  // after the start token
    for (int64_t j = n; j > at; --j) ids[j] = ids[j - 1];
    const int64_t first = data::Tokenizer::kStart + 1;  // the first id of a real piece
    ids[at] = first + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(vocab - first)));
    real[n] = true;
    ++n;
  }
}

DiTStage::DiTStage(const DiTStageOptions& o, const models::DiTConfig& dit_config,
                   const models::TextEncoderOptions& text_options, int tokens, diffusion::GaussianDiffusion d,
                   std::shared_ptr<const data::Tokenizer> tokenizer, std::shared_ptr<Stage> vae,
                   double caption_dropout, ImageSpec pixels)
    : options(o),
      config(dit_config),
      max_tokens(tokens),
      diffusion(std::move(d)),
      tokenizer_(std::move(tokenizer)),
      vae_(std::move(vae)),
      caption_dropout_(caption_dropout),
      pixels_(std::move(pixels)) {
  text = register_module("text", models::TextEncoder(text_options, max_tokens));
  dit = register_module("dit", models::DiT(dit_config));
  if (vae_) autoencoder_ = vae_->AsAutoencoder();
}

std::vector<Trainable> DiTStage::Trainables() {
  Trainable t;
  t.name = "model";
  t.module = shared_from_this();
  t.optim = optim;
  t.ema = ema;
  return {t};
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
  const torch::Tensor source = latent ? batch.caches.at("latents") : batch.pixels;  // [B, C', H, W]
  const int64_t B = source.size(0);
  const int64_t C = latent ? source.size(1) / 2 : source.size(1);
  torch::Tensor x0 = latent ? torch::empty({B, C, source.size(2), source.size(3)}) : batch.pixels;
  torch::Tensor tokens = batch.tokens.clone(), mask = batch.mask.clone();
  torch::Tensor t = torch::empty({B}, torch::kLong);
  torch::Tensor noise = torch::empty_like(x0);
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    const uint64_t id = static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]);
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed, static_cast<uint64_t>(step), id));
    t[i] = torch::randint(0, diffusion.timesteps(), {1}, gen, torch::kLong)[0];
    noise[i].copy_(torch::randn(x0[i].sizes(), gen));
    if (latent) {
      const torch::Tensor mean = source[i].narrow(0, 0, C), logvar = source[i].narrow(0, C, C).clamp(-30, 20);
      const torch::Tensor z = mean + torch::exp(0.5 * logvar) * torch::randn(mean.sizes(), gen);
      x0[i].copy_(z * autoencoder_->latent_scale());
    }
    SplitMix64 coin(SeedFor(seed ^ 0xD809ull, static_cast<uint64_t>(step), id));
    if (coin.Uniform() < caption_dropout_) {
      EmptyCaption(tokens.narrow(0, i, 1), mask.narrow(0, i, 1));
    } else if (options.caption_noise > 0) {
      SplitMix64 noise_coin(SeedFor(seed ^ 0x4E4F4953ull, static_cast<uint64_t>(step), id));
      if (noise_coin.Uniform() < options.caption_noise) {
        InsertNoiseTokens(tokens[i], mask[i], tokenizer_->vocab_size(), noise_coin);
      }
    }
  }
  const auto device = dit->pos_embed.device();
  Autocast autocast(device, bf16);
  return diffusion.training_losses(Bind(tokens.to(device), mask.to(device)), x0.to(device), t.to(device),
                                   noise.to(device)).to(torch::kFloat32);  // [B]
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
  torch::Tensor noise = torch::empty({B, config.channels, config.image_size, config.image_size});
  for (int64_t i = 0; i < B; ++i) {
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed, 0x53414d50ull, static_cast<uint64_t>(i)));
    noise[i].copy_(torch::randn(noise[i].sizes(), gen));
  }
  // Pixels live in [-1, 1]; scaled latents have unit spread and are not clipped.
  const bool latent = autoencoder_ != nullptr;
  const torch::Tensor x = diffusion.Sample(model, noise.to(device), {.steps = steps, .clip_x0 = !latent});
  return latent ? x : x.clamp(-1, 1);
}

torch::Tensor DiTStage::Tokenize(const std::vector<std::string>& prompts, torch::Tensor* mask) const {
  const int64_t n = static_cast<int64_t>(prompts.size());
  torch::Tensor tokens = torch::empty({n, max_tokens}, torch::kLong);
  *mask = torch::empty({n, max_tokens}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) {
    tokenizer_->Encode(prompts[i], max_tokens, tokens[i].data_ptr<int64_t>(), (*mask)[i].data_ptr<bool>());
  }
  return tokens;
}

absl::StatusOr<torch::Tensor> DiTStage::Generate(const std::vector<std::string>& prompts,
                                                 const GenerateOptions& o) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to generate from");
  torch::NoGradGuard no_grad;
  torch::Tensor mask;
  const torch::Tensor tokens = Tokenize(prompts, &mask);
  const torch::Tensor x = Sample(tokens, mask, o.cfg, o.steps, o.seed);
  if (autoencoder_ == nullptr) return x.to(torch::kCPU);
  return autoencoder_->Decode(x / autoencoder_->latent_scale()).clamp(-1, 1).to(torch::kCPU);
}

absl::Status DiTStage::Preview(const PreviewData& data, const std::string& png_path) {
  std::vector<std::string> prompts;
  for (const std::string& name : data.label_names) prompts.push_back(eval::RenderTemplate("a photo of {a_class}", name));
  for (size_t i = 0; prompts.empty() && i < data.batch.captions.size() && i < 8; ++i) {
    prompts.push_back(data.batch.captions[i]);
  }
  if (prompts.empty()) return absl::OkStatus();
  constexpr int kPerPrompt = 4;
  std::vector<std::string> rows;
  for (size_t i = 0; i < prompts.size() * kPerPrompt; ++i) rows.push_back(prompts[i % prompts.size()]);
  ASSIGN_OR_RETURN(torch::Tensor images, Generate(rows, {options.preview_cfg, options.preview_steps, data.seed}));
  return eval::WriteGrid(png_path, images, static_cast<int>(prompts.size()));
}

absl::StatusOr<nlohmann::ordered_json> DiTStage::Evaluate(const PreviewData& data) {
  if (!judge_) {
    if (options.eval.judge.empty()) {
      return absl::InvalidArgumentError("train.eval_every is set but stage.eval.judge is empty; name a judge made by "
                                        "'loom eval classifier' or set train.eval_every: 0");
    }
    ASSIGN_OR_RETURN(eval::Judge judge, eval::Judge::Load(options.eval.judge));
    RETURN_IF_ERROR(eval::CheckJudgeFits(judge, pixels_.size, pixels_.channels, pixels_.fit));
    judge_ = std::move(judge);
  }
  eval::PromptEvalOptions eo;
  eo.per_class = options.eval.per_class;
  eo.steps = options.eval.steps;
  eo.cfg = options.eval.cfg;
  eo.seed = data.seed;
  eo.templates = options.eval.templates;
  const auto generate = [&](const std::vector<std::string>& prompts, uint64_t seed) {
    return Generate(prompts, {eo.cfg, eo.steps, seed});
  };
  ASSIGN_OR_RETURN(eval::PromptEvalResult r, eval::EvaluatePrompts(generate, *judge_, eo));
  return r.ToJson();
}

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
      {"diffusion",
       {{"schedule", options.diffusion.schedule},
        {"timesteps", options.diffusion.timesteps},
        {"prediction", options.diffusion.prediction},
        {"loss_weight", options.diffusion.loss_weight},
        {"snr_gamma", options.diffusion.snr_gamma}}},
      {"space", autoencoder_ != nullptr ? "latent" : "pixel"},
      {"output", {{"image_size", pixels_.size}, {"channels", pixels_.channels}, {"fit", pixels_.fit}}},
      {"caption_dropout", caption_dropout_},
      {"caption_noise", options.caption_noise}};
  return d;
}

std::map<std::string, std::string> DiTStage::Assets() const { return {{"tokenizer.model", tokenizer_->serialized()}}; }

absl::StatusOr<std::shared_ptr<Stage>> MakeDiTStage(const StageInputs& in) {
  const DiTStageOptions& o = *in.options->As<DiTStageOptions>();
  std::shared_ptr<const data::Tokenizer> tokenizer;
  if (const auto it = in.assets.find("tokenizer.model"); it != in.assets.end()) {
    ASSIGN_OR_RETURN(tokenizer, data::Tokenizer::FromBytes(it->second, "the saved tokenizer.model"));
  } else {
    if (in.data.train.empty() && in.data.tokenizer.empty()) {
      return absl::InvalidArgumentError("data.train is empty: name a dataset directory");
    }
    const std::string path = in.data.tokenizer.empty() ? in.data.train + "/tokenizer.model" : in.data.tokenizer;
    ASSIGN_OR_RETURN(tokenizer, data::Tokenizer::Load(path));
  }
  if (tokenizer->vocab_size() > o.model.text.vocab) {
    return absl::InvalidArgumentError("the tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                                      " tokens but stage.model.text.vocab is " + std::to_string(o.model.text.vocab) +
                                      "; raise stage.model.text.vocab");
  }
  if (in.train.eval_every > 0 && o.eval.judge.empty()) {
    return absl::InvalidArgumentError("train.eval_every is " + std::to_string(in.train.eval_every) +
                                      " but stage.eval.judge is empty; name a judge made by 'loom eval classifier' "
                                      "or set train.eval_every: 0");
  }
  std::shared_ptr<Stage> vae;
  int64_t size = in.data.image_size, channels = in.data.channels;
  ImageSpec pixels{in.data.image_size, in.data.channels, in.data.fit};
  if (!o.vae.empty()) {
    const auto it = in.dependencies.find("vae");
    if (it == in.dependencies.end() || it->second->AsAutoencoder() == nullptr) {
      return absl::InvalidArgumentError("stage.vae: " + o.vae + " is not loaded as a VAE");
    }
    vae = it->second;
    const Autoencoder* ae = vae->AsAutoencoder();
    const std::vector<int64_t> latent = ae->latent_shape();
    channels = latent[0];
    size = latent[1];
    pixels = ae->image_spec();
  }
  ASSIGN_OR_RETURN(models::DiTConfig config, models::ResolveDiT(o.model, size, channels));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion process, diffusion::GaussianDiffusion::Create(o.diffusion));
  auto stage = std::make_shared<DiTStage>(o, config, o.model.text, in.data.max_tokens, std::move(process),
                                          std::move(tokenizer), std::move(vae), in.data.caption_dropout, pixels);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

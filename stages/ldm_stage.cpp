// The latent diffusion stage (see ldm_stage.h).
#include "stages/ldm_stage.h"

#include <optional>

#include "core/rng.h"
#include "data/pixels.h"
#include "eval/image_grid.h"
#include "eval/super_resolution.h"
#include "stages/autocast.h"
#include "stages/registry.h"

namespace loom::stages {

void LdmStageOptions::Describe(config::Fields<LdmStageOptions>& f) {
  using O = LdmStageOptions;
  f.Add("model", &O::model, "the U-Net");
  f.Add("diffusion", &O::diffusion, "diffusion process and objective");
  f.Add("vae", &O::vae, kVaeOptionDoc);
  f.Add("text_encoder", &O::text_encoder,
        "a text-encoder export (frozen, e.g. made by 'loom import text-encoder') whose per-token features "
        "data.train caches ('loom data encode --with' it); empty: train stage.text with the U-Net");
  f.Add("text", &O::text, "the small text encoder trained with the U-Net (when text_encoder is empty)");
  f.Add("pooled_text", &O::pooled_text,
        "add the masked mean of the caption features, projected, to the timestep embedding (Imagen)");
  f.Add("thresholding", &O::thresholding,
        "of the predicted x0 when sampling pixels: static (clip to [-1, 1]), dynamic (Imagen: clip each sample at "
        "its threshold_percentile quantile of |x0| and rescale) or none")
      .Rule(config::OneOf({"static", "dynamic", "none"}));
  f.Add("threshold_percentile", &O::threshold_percentile, "the quantile of dynamic thresholding")
      .Rule(config::Between(0.5, 1));
  f.Add("low_res", &O::low_res,
        "super-resolution: the side of the low-resolution input (data.image_size shrunk; it must divide it); "
        "0: a base stage")
      .Rule(config::Between(0, 16384));
  f.Add("aug_max", &O::aug_max,
        "super-resolution: training noises the input to a level drawn from [0, aug_max] (a fraction of the "
        "diffusion's time) and tells the network the level")
      .Rule(config::Between(0, 1));
  f.Add("aug_level", &O::aug_level, "super-resolution: the noise-augmentation level of the input at sampling")
      .Rule(config::Between(0, 1));
  f.Add("crop", &O::crop,
        "super-resolution: train on random crops of this side (a multiple of data.image_size / low_res); 0: whole "
        "images")
      .Rule(config::Between(0, 16384));
  f.Add("preview_steps", &O::preview_steps, "DDIM steps of the preview grids").Rule(config::Positive());
  f.Add("preview_cfg", &O::preview_cfg, "guidance scale of the preview grids").Rule(config::AtLeast(0));
  f.Add("eval", &O::eval, "judged evaluation every train.eval_every steps");
}

LdmStage::LdmStage(const LdmStageOptions& o, const models::UNetConfig& unet_config, int64_t tokens,
                   std::shared_ptr<const diffusion::Process> d, diffusion::GaussianDiffusion augmentation,
                   std::shared_ptr<const data::Tokenizer> tokenizer,
                   std::shared_ptr<Stage> vae, std::shared_ptr<Stage> text_encoder, double caption_dropout,
                   ImageSpec pixels)
    : options(o),
      config(unet_config),
      max_tokens(tokens),
      diffusion(std::move(d)),
      augmentation(std::move(augmentation)),
      tokenizer_(std::move(tokenizer)),
      vae_(std::move(vae)),
      text_encoder_(std::move(text_encoder)),
      caption_dropout_(caption_dropout),
      pixels_(std::move(pixels)),
      judged_(o.eval, pixels_) {
  if (vae_) autoencoder_ = vae_->AsAutoencoder();
  image_size = autoencoder_ != nullptr ? autoencoder_->latent_shape()[1] : pixels_.size;
  if (text_encoder_) {
    encoding_ = text_encoder_->AsTextEncoding();
    auto [context, mask] = encoding_->EncodeText({""});
    null_context_ = context.to(torch::kCPU);
    null_mask_ = mask.to(torch::kCPU);
  } else {
    text = register_module("text", models::TextEncoder(o.text, max_tokens));
  }
  unet = register_module("unet", models::UNet(unet_config));
}

std::vector<Trainable> LdmStage::Trainables() {
  return WholeStage(shared_from_this(), optim, ema);
}

DataNeeds LdmStage::Needs() const {
  DataNeeds needs;
  if (autoencoder_ != nullptr) {
    needs.caches.push_back("latents");
    needs.cache_producers["latents"] = "vae";
  } else {
    needs.pixels = true;
  }
  if (encoding_ != nullptr) {
    for (const char* name : {"text", "text_mask"}) {
      needs.caches.push_back(name);
      needs.cache_producers[name] = "text_encoder";
    }
  } else {
    needs.tokens = true;
  }
  return needs;
}

std::pair<torch::Tensor, torch::Tensor> LdmStage::EmptyContext(int64_t rows) {
  if (encoding_ != nullptr) {
    return {null_context_.expand({rows, -1, -1}).to(device()), null_mask_.expand({rows, -1}).to(device())};
  }
  torch::Tensor tokens = torch::empty({rows, max_tokens}, torch::kLong);
  torch::Tensor mask = torch::empty({rows, max_tokens}, torch::kBool);
  EmptyCaption(tokens, mask);
  tokens = tokens.to(device());
  mask = mask.to(device());
  return {text->forward(tokens, mask), mask};
}

std::pair<torch::Tensor, torch::Tensor> LdmStage::EncodePrompts(const std::vector<std::string>& prompts) {
  if (encoding_ != nullptr) {
    auto [context, mask] = encoding_->EncodeText(prompts);
    return {context.to(device()), mask.to(device())};
  }
  torch::Tensor mask;
  torch::Tensor tokens = TokenizePrompts(*tokenizer_, prompts, max_tokens, &mask).to(device());
  mask = mask.to(device());
  return {text->forward(tokens, mask), mask};
}

int64_t LdmStage::AugmentationStep(double level) const {
  return std::llround(std::clamp(level, 0.0, 1.0) * static_cast<double>(augmentation.timesteps() - 1));
}

namespace {

// The masked mean of caption features [B, L, D] over real tokens: [B, D].
torch::Tensor PooledText(const torch::Tensor& context, const torch::Tensor& mask) {
  const torch::Tensor keep = mask.to(context.dtype()).unsqueeze(-1);  // [B, L, 1]
  return (context * keep).sum(1) / keep.sum(1).clamp_min(1);
}

}  // namespace

torch::Tensor LdmStage::Denoise(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                                const torch::Tensor& mask, const torch::Tensor& low, const torch::Tensor& aug_t) {
  const torch::Tensor embed = options.pooled_text ? PooledText(context, mask) : torch::Tensor();
  const torch::Tensor x = low.defined() ? torch::cat({x_t, low.to(x_t.dtype())}, 1) : x_t;  // [B, C (+ C), S, S]
  return unet->forward(x, t, context, mask, embed, aug_t);
}

torch::Tensor LdmStage::Losses(const data::Batch& batch, uint64_t seed, int64_t step, bool bf16) {
  const bool latent = autoencoder_ != nullptr;
  torch::Tensor source = latent ? batch.caches.at("latents") : batch.pixels;
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  torch::Tensor low, aug_t;  // a super-resolution stage's input, noised, and its level
  if (options.low_res > 0) {
    // Per sample from (seed, step, id): the crop, the augmentation level and its noise.
    const int64_t B = source.size(0), S = source.size(-1), side = options.crop > 0 ? options.crop : S;
    const int64_t f = S / options.low_res, positions = (S - side) / f + 1;
    torch::Tensor high = torch::empty({B, source.size(1), side, side});
    torch::Tensor noise = torch::empty_like(high);
    aug_t = torch::empty({B}, torch::kLong);
    for (int64_t i = 0; i < B; ++i) {
      const uint64_t id = static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]);
      SplitMix64 draws(SeedFor(seed ^ 0x5352ull, static_cast<uint64_t>(step), id));
      const int64_t y = static_cast<int64_t>(draws.Below(static_cast<uint64_t>(positions))) * f;
      const int64_t x = static_cast<int64_t>(draws.Below(static_cast<uint64_t>(positions))) * f;
      high[i].copy_(source[i].narrow(1, y, side).narrow(2, x, side));
      aug_t[i] = AugmentationStep(draws.Uniform() * options.aug_max);
      at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed ^ 0x5353ull, static_cast<uint64_t>(step), id));
      noise[i].copy_(torch::randn(high[i].sizes(), gen));
    }
    source = high;
    low = augmentation.q_sample(data::UpsampleBicubic(data::Downsample(high, side / f), side), aug_t, noise);
  }
  const int64_t tokens = source.size(-1) * source.size(-1);  // positions per channel, for a flow's shift
  const TrainingDraws d = DrawTraining(source, latent ? autoencoder_->latent_scale() : 0.0, batch.ids, seed, step,
                                       *diffusion, tokens);
  const int64_t B = d.x0.size(0);
  std::vector<int64_t> dropped;
  for (int64_t i = 0; i < B; ++i) {
    if (DropsCaption(seed, step, static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]), caption_dropout_)) {
      dropped.push_back(i);
    }
  }
  const torch::Device dev = device();
  Autocast autocast(dev, bf16);
  torch::Tensor context, mask;
  if (encoding_ != nullptr) {
    const torch::Tensor& cached = batch.caches.at("text");
    TORCH_CHECK(cached.dim() == 3 && cached.size(1) == max_tokens && cached.size(2) == config.context_dim,
                "the cached text features are ", cached.sizes(), " but the text encoder gives [B, ", max_tokens, ", ",
                config.context_dim, "]");
    context = cached.clone();
    mask = batch.caches.at("text_mask") > 0.5;
    for (const int64_t i : dropped) {
      context[i].copy_(null_context_[0]);
      mask[i].copy_(null_mask_[0]);
    }
    context = context.to(dev);
    mask = mask.to(dev);
  } else {
    TORCH_CHECK(batch.tokens.defined(), "the ldm stage needs token ids (a tokenizer in the loader)");
    torch::Tensor tokens = batch.tokens.clone();
    mask = batch.mask.clone();
    for (const int64_t i : dropped) EmptyCaption(tokens.narrow(0, i, 1), mask.narrow(0, i, 1));
    tokens = tokens.to(dev);
    mask = mask.to(dev);
    context = text->forward(tokens, mask);
  }
  if (low.defined()) {
    low = low.to(dev);
    aug_t = aug_t.to(dev);
  }
  const diffusion::Denoiser denoiser = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return Denoise(x, t, context, mask, low, aug_t);
  };
  return diffusion->training_losses(denoiser, d.x0.to(dev), d.t.to(dev), d.noise.to(dev)).to(torch::kFloat32);
}

LossResult LdmStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  return {Losses(batch, ctx.seed, ctx.step, ctx.bf16).mean(), {}};
}

torch::Tensor LdmStage::Sample(const torch::Tensor& context, const torch::Tensor& mask, double cfg, int steps,
                               uint64_t seed, const torch::Tensor& low, const torch::Tensor& aug_t) {
  torch::NoGradGuard no_grad;
  const int64_t B = context.size(0);
  const diffusion::Denoiser cond = [this, context, mask, low, aug_t](const torch::Tensor& x, const torch::Tensor& t) {
    return Denoise(x, t, context, mask, low, aug_t);
  };
  diffusion::Denoiser model = cond;
  if (cfg != 1.0) {
    auto [null_context, null_mask] = EmptyContext(B);
    const diffusion::Denoiser uncond = [this, null_context, null_mask, low, aug_t](const torch::Tensor& x,
                                                                                    const torch::Tensor& t) {
      return Denoise(x, t, null_context, null_mask, low, aug_t);
    };
    model = diffusion::Guided(cond, uncond, cfg);
  }
  const int64_t side = low.defined() ? low.size(-1) : image_size;
  const torch::Tensor noise = SamplingNoise(B, config.out_channels, side, seed);
  // Pixels live in [-1, 1]; scaled latents have unit spread and are not thresholded.
  const bool latent = autoencoder_ != nullptr;
  diffusion::SampleOptions so;
  so.steps = steps;
  so.clip_x0 = !latent && options.thresholding != "none";
  so.dynamic_threshold = !latent && options.thresholding == "dynamic" ? options.threshold_percentile : 0.0;
  so.tokens = side * side;
  const torch::Tensor x = diffusion->Sample(model, noise.to(device()), so);
  return latent ? x : x.clamp(-1, 1);
}

absl::StatusOr<torch::Tensor> LdmStage::Generate(const std::vector<std::string>& prompts, const GenerateOptions& o) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to generate from");
  if (options.low_res > 0) {
    return absl::FailedPreconditionError("a super-resolution stage upsamples images; chain it after a base stage "
                                         "with 'loom export cascade'");
  }
  torch::NoGradGuard no_grad;
  auto [context, mask] = EncodePrompts(prompts);
  const torch::Tensor x = Sample(context, mask, o.cfg, o.steps, o.seed);
  if (autoencoder_ == nullptr) return x.to(torch::kCPU);
  return autoencoder_->Decode(x / autoencoder_->latent_scale()).clamp(-1, 1).to(torch::kCPU);
}

absl::StatusOr<torch::Tensor> LdmStage::Upsample(const torch::Tensor& low, const std::vector<std::string>& captions,
                                                 const UpsampleOptions& o) {
  const int64_t factor = pixels_.size / options.low_res;
  if (low.dim() != 4 || low.size(1) != pixels_.channels || low.size(2) != low.size(3)) {
    return absl::InvalidArgumentError("this super-resolution stage takes square images [B, " +
                                      std::to_string(pixels_.channels) + ", s, s], not " + c10::str(low.sizes()));
  }
  const int64_t B = low.size(0), side = low.size(2) * factor;
  const int64_t levels = int64_t{1} << (config.channel_mult.size() - 1);
  if (side % levels != 0) {
    return absl::InvalidArgumentError("an input of side " + std::to_string(low.size(2)) + " becomes " +
                                      std::to_string(side) + ", which the U-Net cannot take (a multiple of " +
                                      std::to_string(levels) + " is needed)");
  }
  if (static_cast<int64_t>(captions.size()) != B) {
    return absl::InvalidArgumentError(std::to_string(captions.size()) + " captions for " + std::to_string(B) +
                                      " images");
  }
  const double level = o.aug_level < 0 ? options.aug_level : o.aug_level;
  if (level > 1) {
    return absl::InvalidArgumentError("the augmentation level is " + std::to_string(level) + "; it must be in [0, 1]");
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor aug_t = torch::full({B}, AugmentationStep(level), torch::kLong);
  const torch::Tensor noise = SamplingNoise(B, pixels_.channels, side, Mix64(o.seed ^ 0x415547ull));
  const torch::Tensor up = data::UpsampleBicubic(low.to(torch::kCPU, torch::kFloat32), side);
  const torch::Tensor input = augmentation.q_sample(up, aug_t, noise);
  auto [context, mask] = EncodePrompts(captions);
  return Sample(context, mask, o.cfg, o.steps, o.seed, input.to(device()), aug_t.to(device())).to(torch::kCPU);
}

absl::Status LdmStage::Preview(const PreviewData& data, const std::string& png_path) {
  if (options.low_res == 0) {
    return PreviewPrompts(*this, data, {options.preview_cfg, options.preview_steps, data.seed}, png_path);
  }
  // Rows: the input enlarged bicubically, the stage's output, the real image.
  const torch::Tensor& pixels = data.batch.pixels;
  const int64_t n = std::min<int64_t>(8, pixels.size(0));
  if (n == 0) return absl::OkStatus();
  const torch::Tensor high = pixels.narrow(0, 0, n).to(torch::kCPU, torch::kFloat32);
  const torch::Tensor low = data::Downsample(high, options.low_res);
  const std::vector<std::string> captions(data.batch.captions.begin(), data.batch.captions.begin() + n);
  ASSIGN_OR_RETURN(const torch::Tensor out,
                   Upsample(low, captions, {options.preview_cfg, options.preview_steps, data.seed, -1}));
  const torch::Tensor grid = torch::cat({data::UpsampleBicubic(low, high.size(-1)), out, high});
  return eval::WriteGrid(png_path, grid, static_cast<int>(n));
}

absl::StatusOr<nlohmann::ordered_json> LdmStage::Evaluate(const PreviewData& data) {
  if (options.low_res > 0) return EvaluateUpsampling(data);
  return judged_.Run(*this, data);
}

absl::StatusOr<nlohmann::ordered_json> LdmStage::EvaluateUpsampling(const PreviewData& data) {
  if (data.data.test.empty()) {
    return absl::InvalidArgumentError("train.eval_every is set but data.test is empty: a super-resolution stage is "
                                      "evaluated on held-out images; name data.test or set train.eval_every: 0");
  }
  eval::SuperResolutionEvalOptions eo;
  eo.data = data.data.test;
  eo.image_size = pixels_.size;
  eo.channels = pixels_.channels;
  eo.fit = pixels_.fit;
  eo.low_res = options.low_res;
  eo.limit = options.eval.per_class * 10;
  eo.samples = 1;
  eo.seed = data.seed;
  const auto upsample = [&](const torch::Tensor& low, const std::vector<std::string>& captions, uint64_t seed) {
    return Upsample(low, captions, {options.eval.cfg, options.eval.steps, seed, 0.0});
  };
  if (!options.eval.judge.empty() && !sr_judge_) {  // loaded at the first evaluation
    ASSIGN_OR_RETURN(sr_judge_, eval::Judge::Load(options.eval.judge));
  }
  ASSIGN_OR_RETURN(eval::SuperResolutionResult r,
                   eval::EvaluateSuperResolution(upsample, eo, sr_judge_ ? &*sr_judge_ : nullptr));
  return r.ToJson();
}

double LdmStage::ForwardFlops(int64_t batch) const {
  return models::UNetForwardFlops(config, options.crop > 0 ? options.crop : image_size, batch, max_tokens);
}

nlohmann::ordered_json LdmStage::Describe() const {
  nlohmann::ordered_json text_info;
  if (encoding_ != nullptr) {
    text_info = {{"encoder", "frozen"}, {"kind", text_encoder_->kind()}};
  } else {
    const models::TextEncoderOptions& t = text->options;
    text_info = {{"encoder", "trained"}, {"width", t.width}, {"depth", t.depth}, {"heads", t.heads}, {"vocab", t.vocab}};
  }
  return {{"image_size", image_size},
          {"in_channels", config.in_channels},
          {"out_channels", config.out_channels},
          {"model_channels", config.model_channels},
          {"channel_mult", config.channel_mult},
          {"num_res_blocks", config.num_res_blocks},
          {"attention_resolutions", config.attention_resolutions},
          {"heads", config.heads},
          {"transformer_depth", config.transformer_depth},
          {"context_dim", config.context_dim},
          {"max_tokens", max_tokens},
          {"text", text_info},
          {"diffusion", DescribeDiffusion(options.diffusion)},
          {"space", autoencoder_ != nullptr ? "latent" : "pixel"},
          {"output", {{"image_size", pixels_.size}, {"channels", pixels_.channels}, {"fit", pixels_.fit}}},
          {"caption_dropout", caption_dropout_},
          {"pooled_text", options.pooled_text},
          {"thresholding", options.thresholding},
          {"low_res", options.low_res},
          {"aug_level", options.aug_level}};
}

std::map<std::string, std::string> LdmStage::Assets() const {
  if (tokenizer_ == nullptr) return {};
  return {{"tokenizer.model", tokenizer_->serialized()}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeLdmStage(const StageInputs& in) {
  const LdmStageOptions& o = *in.options->As<LdmStageOptions>();
  if (o.low_res == 0) RETURN_IF_ERROR(CheckJudgeNamed(o.eval, in.train.eval_every));
  if (o.model.extra_in_channels != 0 || o.model.embed_dim != 0) {
    return absl::InvalidArgumentError("the ldm stage sets its own conditioning inputs (stage.pooled_text, "
                                      "stage.low_res): leave stage.model.extra_in_channels and stage.model.embed_dim at 0");
  }
  if (o.low_res > 0) {
    const int64_t size = in.data.image_size;
    if (!o.vae.empty()) {
      return absl::InvalidArgumentError("stage.low_res: a super-resolution stage works on pixels; leave stage.vae empty");
    }
    if (size % o.low_res != 0 || size == o.low_res) {
      return absl::InvalidArgumentError("stage.low_res " + std::to_string(o.low_res) + " must divide data.image_size " +
                                        std::to_string(size) + " and be smaller (the stage enlarges by their ratio)");
    }
    const int64_t f = size / o.low_res;
    if (o.crop > 0 && (o.crop > size || o.crop % f != 0)) {
      return absl::InvalidArgumentError("stage.crop " + std::to_string(o.crop) + " must be at most data.image_size " +
                                        std::to_string(size) + " and a multiple of the factor " + std::to_string(f));
    }
  } else if (o.crop > 0) {
    return absl::InvalidArgumentError("stage.crop trains a super-resolution stage on crops; set stage.low_res or "
                                      "leave stage.crop at 0");
  }
  if (o.thresholding == "dynamic" && !o.vae.empty()) {
    return absl::InvalidArgumentError("stage.thresholding: dynamic thresholding acts on pixels; a latent stage "
                                      "(stage.vae) takes static or none");
  }
  std::shared_ptr<const data::Tokenizer> tokenizer;
  std::shared_ptr<Stage> encoder;
  int64_t context_dim = o.text.width, max_tokens = in.data.max_tokens;
  if (!o.text_encoder.empty()) {
    const auto it = in.dependencies.find("text_encoder");
    if (it == in.dependencies.end() || it->second->AsTextEncoding() == nullptr) {
      return absl::InvalidArgumentError("stage.text_encoder: " + o.text_encoder + " is a '" +
                                        (it == in.dependencies.end() ? std::string("missing") : it->second->kind()) +
                                        "' model, which does not encode text; name a text-encoder export (made by "
                                        "'loom import text-encoder')");
    }
    encoder = it->second;
    context_dim = encoder->AsTextEncoding()->context_dim();
    max_tokens = encoder->AsTextEncoding()->max_tokens();
  } else {
    ASSIGN_OR_RETURN(tokenizer, CaptionTokenizer(in.assets, in.data, o.text.vocab));
  }
  ASSIGN_OR_RETURN(DenoisedSpace space, ResolveDenoisedSpace(in, o.vae));
  ASSIGN_OR_RETURN(models::UNetConfig config,
                   models::ResolveUNet(o.model, space.channels, space.channels, o.crop > 0 ? o.crop : space.size,
                                       context_dim));
  if (o.low_res > 0) {
    config.in_channels += space.channels;  // the enlarged input
    config.aug_embed = true;
  }
  if (o.pooled_text) config.embed_dim = context_dim;
  ASSIGN_OR_RETURN(std::shared_ptr<const diffusion::Process> process, diffusion::MakeProcess(o.diffusion));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion augmentation, diffusion::GaussianDiffusion::Create(o.diffusion));
  auto stage = std::make_shared<LdmStage>(o, config, max_tokens, std::move(process), std::move(augmentation),
                                          std::move(tokenizer),
                                          std::move(space.vae), std::move(encoder), in.data.caption_dropout, space.images);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

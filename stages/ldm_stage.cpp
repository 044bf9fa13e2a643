// The latent diffusion stage (see ldm_stage.h).
#include "stages/ldm_stage.h"

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
  f.Add("preview_steps", &O::preview_steps, "DDIM steps of the preview grids").Rule(config::Positive());
  f.Add("preview_cfg", &O::preview_cfg, "guidance scale of the preview grids").Rule(config::AtLeast(0));
  f.Add("eval", &O::eval, "judged evaluation every train.eval_every steps");
}

LdmStage::LdmStage(const LdmStageOptions& o, const models::UNetConfig& unet_config, int64_t tokens,
                   diffusion::GaussianDiffusion d, std::shared_ptr<const data::Tokenizer> tokenizer,
                   std::shared_ptr<Stage> vae, std::shared_ptr<Stage> text_encoder, double caption_dropout,
                   ImageSpec pixels)
    : options(o),
      config(unet_config),
      max_tokens(tokens),
      diffusion(std::move(d)),
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

torch::Tensor LdmStage::Losses(const data::Batch& batch, uint64_t seed, int64_t step, bool bf16) {
  const bool latent = autoencoder_ != nullptr;
  const TrainingDraws d = DrawTraining(latent ? batch.caches.at("latents") : batch.pixels,
                                       latent ? autoencoder_->latent_scale() : 0.0, batch.ids, seed, step,
                                       diffusion.timesteps());
  const int64_t B = d.x0.size(0);
  std::vector<int64_t> dropped;
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
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
  const diffusion::Denoiser denoiser = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return unet->forward(x, t, context, mask);
  };
  return diffusion.training_losses(denoiser, d.x0.to(dev), d.t.to(dev), d.noise.to(dev)).to(torch::kFloat32);
}

LossResult LdmStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  return {Losses(batch, ctx.seed, ctx.step, ctx.bf16).mean(), {}};
}

torch::Tensor LdmStage::Sample(const torch::Tensor& context, const torch::Tensor& mask, double cfg, int steps,
                               uint64_t seed) {
  torch::NoGradGuard no_grad;
  const int64_t B = context.size(0);
  const diffusion::Denoiser cond = [this, context, mask](const torch::Tensor& x, const torch::Tensor& t) {
    return unet->forward(x, t, context, mask);
  };
  diffusion::Denoiser model = cond;
  if (cfg != 1.0) {
    auto [null_context, null_mask] = EmptyContext(B);
    const diffusion::Denoiser uncond = [this, null_context, null_mask](const torch::Tensor& x, const torch::Tensor& t) {
      return unet->forward(x, t, null_context, null_mask);
    };
    model = diffusion::Guided(cond, uncond, cfg);
  }
  const torch::Tensor noise = SamplingNoise(B, config.out_channels, image_size, seed);
  // Pixels live in [-1, 1]; scaled latents have unit spread and are not clipped.
  const bool latent = autoencoder_ != nullptr;
  const torch::Tensor x = diffusion.Sample(model, noise.to(device()), {.steps = steps, .clip_x0 = !latent});
  return latent ? x : x.clamp(-1, 1);
}

absl::StatusOr<torch::Tensor> LdmStage::Generate(const std::vector<std::string>& prompts, const GenerateOptions& o) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to generate from");
  torch::NoGradGuard no_grad;
  auto [context, mask] = EncodePrompts(prompts);
  const torch::Tensor x = Sample(context, mask, o.cfg, o.steps, o.seed);
  if (autoencoder_ == nullptr) return x.to(torch::kCPU);
  return autoencoder_->Decode(x / autoencoder_->latent_scale()).clamp(-1, 1).to(torch::kCPU);
}

absl::Status LdmStage::Preview(const PreviewData& data, const std::string& png_path) {
  return PreviewPrompts(*this, data, {options.preview_cfg, options.preview_steps, data.seed}, png_path);
}

absl::StatusOr<nlohmann::ordered_json> LdmStage::Evaluate(const PreviewData& data) { return judged_.Run(*this, data); }

double LdmStage::ForwardFlops(int64_t batch) const {
  return models::UNetForwardFlops(config, image_size, batch, max_tokens);
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
          {"caption_dropout", caption_dropout_}};
}

std::map<std::string, std::string> LdmStage::Assets() const {
  if (tokenizer_ == nullptr) return {};
  return {{"tokenizer.model", tokenizer_->serialized()}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeLdmStage(const StageInputs& in) {
  const LdmStageOptions& o = *in.options->As<LdmStageOptions>();
  RETURN_IF_ERROR(CheckJudgeNamed(o.eval, in.train.eval_every));
  if (o.model.extra_in_channels != 0 || o.model.embed_dim != 0) {
    return absl::InvalidArgumentError("the ldm stage conditions on text alone: leave stage.model.extra_in_channels "
                                      "and stage.model.embed_dim at 0");
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
                   models::ResolveUNet(o.model, space.channels, space.channels, space.size, context_dim));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion process, diffusion::GaussianDiffusion::Create(o.diffusion));
  auto stage = std::make_shared<LdmStage>(o, config, max_tokens, std::move(process), std::move(tokenizer),
                                          std::move(space.vae), std::move(encoder), in.data.caption_dropout, space.images);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

// DiT stage (see dit_stage.h).
#include "train/dit_stage.h"

#include <ATen/autocast_mode.h>

#include "core/rng.h"
#include "data/tokenizer.h"

namespace loom::train {

namespace {

// Autocast for one forward pass, on the device the model lives on.
class Autocast {
 public:
  Autocast(torch::Device device, bool enabled) : type_(device.type()), enabled_(enabled) {
    if (!enabled_) return;
    was_ = at::autocast::is_autocast_enabled(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, torch::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, was_);
  }

 private:
  c10::DeviceType type_;
  bool enabled_;
  bool was_ = false;
};

}  // namespace

void EmptyCaption(torch::Tensor tokens, torch::Tensor mask) {
  tokens.fill_(data::Tokenizer::kPad);
  tokens.select(1, 0).fill_(data::Tokenizer::kStart);
  mask.fill_(false);
  mask.select(1, 0).fill_(true);
}

DiTStageImpl::DiTStageImpl(const models::DiTConfig& dit_config, const models::TextEncoderOptions& text_options,
                           int64_t max_tokens, diffusion::GaussianDiffusion d)
    : config(dit_config), diffusion(std::move(d)) {
  text = register_module("text", models::TextEncoder(text_options, max_tokens));
  dit = register_module("dit", models::DiT(dit_config));
}

diffusion::Denoiser DiTStageImpl::Bind(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const torch::Tensor context = text->forward(tokens, mask);  // [B, L, Dc]
  return [this, context, mask](const torch::Tensor& x, const torch::Tensor& t) {
    return dit->forward(x, t, context, mask);
  };
}

torch::Tensor DiTStageImpl::Loss(const data::Batch& batch, uint64_t seed, int64_t step, double caption_dropout,
                                 bool bf16) {
  TORCH_CHECK(batch.tokens.defined(), "the DiT stage needs token ids (a tokenizer in the loader)");
  const int64_t B = batch.pixels.size(0);
  torch::Tensor tokens = batch.tokens.clone(), mask = batch.mask.clone();
  torch::Tensor t = torch::empty({B}, torch::kLong);
  torch::Tensor noise = torch::empty_like(batch.pixels);
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    const uint64_t id = static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]);
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed, static_cast<uint64_t>(step), id));
    t[i] = torch::randint(0, diffusion.timesteps(), {1}, gen, torch::kLong)[0];
    noise[i].copy_(torch::randn(batch.pixels[i].sizes(), gen));
    SplitMix64 coin(SeedFor(seed ^ 0xD809ull, static_cast<uint64_t>(step), id));
    if (coin.Uniform() < caption_dropout) EmptyCaption(tokens.narrow(0, i, 1), mask.narrow(0, i, 1));
  }
  const auto device = dit->pos_embed.device();
  Autocast autocast(device, bf16);
  return diffusion.training_losses(Bind(tokens.to(device), mask.to(device)), batch.pixels.to(device),
                                   t.to(device), noise.to(device)).to(torch::kFloat32);  // [B]
}

torch::Tensor DiTStageImpl::Sample(const torch::Tensor& tokens, const torch::Tensor& mask, double cfg, int steps,
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
  return diffusion.Sample(model, noise.to(device), {.steps = steps}).clamp(-1, 1);
}

}  // namespace loom::train

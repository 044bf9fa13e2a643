// CLIP's towers (see clip.h).
#include "models/clip.h"

#include <cmath>

namespace loom::models {

absl::StatusOr<ClipConfig> ResolveClip(const ClipOptions& o, int64_t image_size, int64_t channels,
                                       int64_t max_tokens) {
  if (image_size % o.patch != 0) {
    return absl::InvalidArgumentError("stage.model.patch " + std::to_string(o.patch) +
                                      " does not divide data.image_size " + std::to_string(image_size) +
                                      "; pick a patch side that divides it");
  }
  ClipConfig c;
  c.image_size = image_size;
  c.channels = channels;
  c.patch = o.patch;
  c.width = o.width;
  c.depth = o.depth;
  c.heads = o.heads;
  c.embed_dim = o.embed_dim;
  c.text = o.text;
  c.max_tokens = max_tokens;
  return c;
}

ClipImageTowerImpl::ClipImageTowerImpl(const ClipConfig& c) {
  const int64_t patches = (c.image_size / c.patch) * (c.image_size / c.patch);
  patch_embed = register_module(
      "patch_embed",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(c.channels, c.width, c.patch).stride(c.patch).bias(false)));
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.width));
  class_token = register_parameter("class_token", torch::randn({c.width}) * scale);
  positions = register_parameter("positions", torch::randn({1 + patches, c.width}) * scale);
  pre_norm = register_module("pre_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.depth; ++i) blocks->push_back(TextBlock(c.width, c.heads));
  post_norm = register_module("post_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  proj = register_parameter("proj", torch::randn({c.width, c.embed_dim}) * scale);
}

torch::Tensor ClipImageTowerImpl::forward(const torch::Tensor& images) {
  torch::Tensor x = patch_embed->forward(images).flatten(2).transpose(1, 2);  // [B, N, D]
  const int64_t B = x.size(0);
  x = torch::cat({class_token.view({1, 1, -1}).expand({B, 1, x.size(2)}).to(x.dtype()), x}, 1) + positions;
  x = pre_norm->forward(x);
  for (const auto& block : *blocks) x = block->as<TextBlockImpl>()->forward(x, {});
  return torch::matmul(post_norm->forward(x.select(1, 0)), proj);  // [B, E]
}

ClipTextTowerImpl::ClipTextTowerImpl(const ClipConfig& c) {
  encoder = register_module("encoder", TextEncoder(c.text, c.max_tokens));
  proj = register_parameter("proj", torch::randn({c.text.width, c.embed_dim}) / std::sqrt(static_cast<double>(c.text.width)));
}

std::pair<torch::Tensor, torch::Tensor> ClipTextTowerImpl::Encode(const torch::Tensor& tokens,
                                                                  const torch::Tensor& mask) {
  const torch::Tensor features = encoder->forward(tokens, mask);  // [B, L, W]
  // The last real token: every caption starts with the start token, so at least one.
  const torch::Tensor last = (mask.sum(1) - 1).clamp_min(0).to(torch::kLong);  // [B]
  const torch::Tensor pooled =
      features.gather(1, last.view({-1, 1, 1}).expand({features.size(0), 1, features.size(2)})).squeeze(1);
  return {features, torch::matmul(pooled, proj)};
}

ClipModelImpl::ClipModelImpl(const ClipConfig& c) : config(c) {
  image = register_module("image", ClipImageTower(c));
  text = register_module("text", ClipTextTower(c));
  logit_scale = register_parameter("logit_scale", torch::full({}, ClipInitialLogitScale()));
}

double ClipInitialLogitScale() { return std::log(1 / 0.07); }
double ClipMaxLogitScale() { return std::log(100.0); }

double ClipForwardFlops(const ClipConfig& c, int64_t batch) {
  // A pre-norm block over T tokens of width D: q, k, v and the output projection, the
  // scores and the weighted sum, a 4x MLP.
  const auto block = [](double T, double D) { return 2 * T * D * 4 * D + 2 * T * T * D * 2 + 2 * T * D * 8 * D; };
  const double N = static_cast<double>((c.image_size / c.patch) * (c.image_size / c.patch));
  double image = c.depth * block(N + 1, c.width);
  image += 2 * N * (c.patch * c.patch * c.channels) * c.width + 2.0 * c.width * c.embed_dim;
  double text = c.text.depth * block(static_cast<double>(c.max_tokens), c.text.width);
  text += 2.0 * c.text.width * c.embed_dim;
  return (image + text) * static_cast<double>(batch);
}

}  // namespace loom::models

// ResNet, attention and resampling blocks (see resnet.h).
#include "models/layers/resnet.h"

namespace loom::models {
namespace {

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t padding = -1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(padding < 0 ? k / 2 : padding));
}

}  // namespace

torch::nn::GroupNorm Normalize(int64_t channels, int64_t groups) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(1e-6));
}

ResnetBlockImpl::ResnetBlockImpl(int64_t in, int64_t out, int64_t groups, double p) {
  norm1 = register_module("norm1", Normalize(in, groups));
  conv1 = register_module("conv1", Conv(in, out, 3));
  norm2 = register_module("norm2", Normalize(out, groups));
  dropout = register_module("dropout", torch::nn::Dropout(p));
  conv2 = register_module("conv2", Conv(out, out, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", Conv(in, out, 1));
}

torch::Tensor ResnetBlockImpl::forward(const torch::Tensor& x) {
  // `this` stays valid: a hook may rerun the body during backward, while the model lives.
  return Call({x}, [this](const Tensors& in) { return Tensors{Body(in[0])}; })[0];
}

torch::Tensor ResnetBlockImpl::Body(const torch::Tensor& x) {
  torch::Tensor h = conv1->forward(torch::silu(norm1->forward(x)));             // [B, Cout, H, W]
  h = conv2->forward(dropout->forward(torch::silu(norm2->forward(h))));        // [B, Cout, H, W]
  return (nin_shortcut.is_empty() ? x : nin_shortcut->forward(x)) + h;         // [B, Cout, H, W]
}

AttnBlockImpl::AttnBlockImpl(int64_t c, int64_t groups) {
  norm = register_module("norm", Normalize(c, groups));
  q = register_module("q", Conv(c, c, 1));
  k = register_module("k", Conv(c, c, 1));
  v = register_module("v", Conv(c, c, 1));
  proj_out = register_module("proj_out", Conv(c, c, 1));
}

torch::Tensor AttnBlockImpl::forward(const torch::Tensor& x) {
  return Call({x}, [this](const Tensors& in) { return Tensors{Body(in[0])}; })[0];
}

torch::Tensor AttnBlockImpl::Body(const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const torch::Tensor h = norm->forward(x);
  const auto tokens = [&](const torch::Tensor& t) { return t.reshape({B, 1, C, H * W}).transpose(2, 3); };
  const torch::Tensor out = torch::scaled_dot_product_attention(tokens(q->forward(h)), tokens(k->forward(h)),
                                                                tokens(v->forward(h)));  // [B, 1, HW, C]
  return x + proj_out->forward(out.transpose(2, 3).reshape({B, C, H, W}));               // [B, C, H, W]
}

DownsampleImpl::DownsampleImpl(int64_t channels) { conv = register_module("conv", Conv(channels, channels, 3, 2, 0)); }

torch::Tensor DownsampleImpl::forward(const torch::Tensor& x) {
  return conv->forward(torch::constant_pad_nd(x, {0, 1, 0, 1}));  // [B, C, H/2, W/2]
}

UpsampleImpl::UpsampleImpl(int64_t channels) { conv = register_module("conv", Conv(channels, channels, 3)); }

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  const torch::Tensor up = F::interpolate(
      x, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
  return conv->forward(up);  // [B, C, 2H, 2W]
}

}  // namespace loom::models

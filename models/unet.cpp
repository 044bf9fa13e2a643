// The latent diffusion U-Net (see unet.h).
#include "models/unet.h"

#include <algorithm>
#include <map>

#include "models/layers/embeddings.h"  // TimestepSinusoids
#include "models/layers/resnet.h"      // Normalize, ConvFlops

namespace loom::models {
namespace {

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
}

// Layers that start at zero, so a fresh block adds nothing to its residual path.
template <typename Layer>
Layer Zeroed(Layer layer) {
  torch::NoGradGuard no_grad;
  layer->weight.zero_();
  if (layer->bias.defined()) layer->bias.zero_();
  return layer;
}

struct Size {
  int64_t model_channels;
  std::vector<int64_t> channel_mult;
  int64_t num_res_blocks;
  std::vector<int64_t> attention_resolutions;
  int64_t heads;
};

const std::map<std::string, Size>& Sizes() {
  static const std::map<std::string, Size> sizes = {
      {"XS", {32, {1, 2, 2}, 1, {2, 4}, 4}},
      {"S", {64, {1, 2, 2}, 1, {2, 4}, 4}},
      {"B", {128, {1, 2, 2, 2}, 2, {2, 4}, 8}},
  };
  return sizes;
}

bool Attends(const UNetConfig& c, int64_t ds) {
  return std::find(c.attention_resolutions.begin(), c.attention_resolutions.end(), ds) !=
         c.attention_resolutions.end();
}

}  // namespace

UNetPlan PlanUNet(const UNetConfig& c) {
  UNetPlan plan;
  const int64_t mc = c.model_channels, levels = static_cast<int64_t>(c.channel_mult.size());
  std::vector<int64_t> skips = {mc};  // conv_in's output is the first skip
  int64_t ch = mc, ds = 1;
  for (int64_t level = 0; level < levels; ++level) {
    for (int64_t r = 0; r < c.num_res_blocks; ++r) {
      const int64_t out = c.channel_mult[level] * mc;
      plan.input.push_back({ch, out, Attends(c, ds), false, false, ds});
      ch = out;
      skips.push_back(ch);
    }
    if (level + 1 < levels) {
      plan.input.push_back({ch, 0, false, true, false, ds});
      skips.push_back(ch);
      ds *= 2;
    }
  }
  plan.middle_channels = ch;
  plan.middle_factor = ds;
  for (int64_t level = levels - 1; level >= 0; --level) {
    for (int64_t r = 0; r <= c.num_res_blocks; ++r) {
      const int64_t out = c.channel_mult[level] * mc;
      const bool up = level > 0 && r == c.num_res_blocks;
      plan.output.push_back({ch + skips.back(), out, Attends(c, ds), false, up, ds});
      skips.pop_back();
      ch = out;
      if (up) ds /= 2;
    }
  }
  return plan;
}

std::vector<std::string> UNetSizes() {
  std::vector<std::string> out;
  for (const auto& [name, size] : Sizes()) out.push_back(name);
  return out;
}

absl::StatusOr<UNetConfig> ResolveUNet(const UNetOptions& m, int64_t in_channels, int64_t out_channels,
                                       int64_t image_size, int64_t context_dim) {
  UNetConfig c;
  c.in_channels = in_channels + m.extra_in_channels;
  c.out_channels = out_channels;
  c.model_channels = m.model_channels;
  c.channel_mult.assign(m.channel_mult.begin(), m.channel_mult.end());
  c.num_res_blocks = m.num_res_blocks;
  c.attention_resolutions.assign(m.attention_resolutions.begin(), m.attention_resolutions.end());
  c.heads = m.heads;
  c.transformer_depth = m.transformer_depth;
  c.groups = m.groups;
  c.dropout = m.dropout;
  c.context_dim = context_dim;
  c.embed_dim = m.embed_dim;
  c.embed_tokens = m.embed_tokens;
  if (!m.size.empty()) {
    const auto it = Sizes().find(m.size);
    if (it == Sizes().end()) {
      std::string known;
      for (const auto& n : UNetSizes()) known += (known.empty() ? "" : ", ") + n;
      return absl::InvalidArgumentError("stage.model.size '" + m.size + "' is not a registered U-Net size (" + known +
                                        "); or leave it empty and give model_channels, channel_mult, ...");
    }
    c.model_channels = it->second.model_channels;
    c.channel_mult = it->second.channel_mult;
    c.num_res_blocks = it->second.num_res_blocks;
    c.attention_resolutions = it->second.attention_resolutions;
    c.heads = it->second.heads;
  }
  const int64_t factor = int64_t{1} << (c.channel_mult.size() - 1);
  if (image_size % factor != 0) {
    return absl::InvalidArgumentError("a U-Net of " + std::to_string(c.channel_mult.size()) + " levels halves its input " +
                                      std::to_string(c.channel_mult.size() - 1) + " times: the side " +
                                      std::to_string(image_size) + " must be divisible by " + std::to_string(factor));
  }
  for (const int64_t r : c.attention_resolutions) {
    if (r < 1 || r > factor || (r & (r - 1)) != 0) {
      return absl::InvalidArgumentError("stage.model.attention_resolutions holds " + std::to_string(r) +
                                        "; the levels' downsampling factors are 1 to " + std::to_string(factor) +
                                        " in powers of 2");
    }
  }
  for (const int64_t mult : c.channel_mult) {
    const int64_t ch = mult * c.model_channels;
    if (ch % c.groups != 0 || ch % c.heads != 0) {
      return absl::InvalidArgumentError("U-Net level width " + std::to_string(ch) + " (model_channels x channel_mult) " +
                                        "must be divisible by groups " + std::to_string(c.groups) + " and heads " +
                                        std::to_string(c.heads));
    }
  }
  return c;
}

TimestepResBlockImpl::TimestepResBlockImpl(int64_t in, int64_t out, int64_t emb_dim, int64_t groups, double p) {
  in_norm = register_module("in_norm", Normalize(in, groups));
  in_conv = register_module("in_conv", Conv(in, out, 3));
  emb_proj = register_module("emb_proj", torch::nn::Linear(emb_dim, out));
  out_norm = register_module("out_norm", Normalize(out, groups));
  dropout = register_module("dropout", torch::nn::Dropout(p));
  out_conv = register_module("out_conv", Zeroed(Conv(out, out, 3)));
  if (in != out) skip = register_module("skip", Conv(in, out, 1));
}

torch::Tensor TimestepResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  return Call({x, emb}, [this](const Tensors& in) { return Tensors{Body(in[0], in[1])}; })[0];
}

torch::Tensor TimestepResBlockImpl::Body(const torch::Tensor& x, const torch::Tensor& emb) {
  torch::Tensor h = in_conv->forward(torch::silu(in_norm->forward(x)));               // [B, Cout, H, W]
  h = h + emb_proj->forward(torch::silu(emb)).unsqueeze(-1).unsqueeze(-1);             // [B, Cout, H, W]
  h = out_conv->forward(dropout->forward(torch::silu(out_norm->forward(h))));          // [B, Cout, H, W]
  return (skip.is_empty() ? x : skip->forward(x)) + h;                                 // [B, Cout, H, W]
}

TransformerBlockImpl::TransformerBlockImpl(int64_t dim, int64_t heads, int64_t context_dim) {
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  attn1 = register_module("attn1", Attention(AttentionOptions(dim, heads)));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  attn2 = register_module("attn2", Attention(AttentionOptions(dim, heads).context_dim(context_dim)));
  norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  ff_in = register_module("ff_in", torch::nn::Linear(dim, 8 * dim));
  ff_out = register_module("ff_out", torch::nn::Linear(4 * dim, dim));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                            const torch::Tensor& mask) {
  torch::Tensor h = x + attn1->forward(norm1->forward(x));                            // [B, N, D]
  h = h + attn2->forward(norm2->forward(h), context, mask);                           // [B, N, D]
  const std::vector<torch::Tensor> parts = ff_in->forward(norm3->forward(h)).chunk(2, -1);  // 2 x [B, N, 4D]
  return h + ff_out->forward(parts[0] * torch::gelu(parts[1]));                       // [B, N, D], GEGLU
}

SpatialTransformerImpl::SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim,
                                               int64_t groups) {
  norm = register_module("norm", Normalize(channels, groups));
  proj_in = register_module("proj_in", Conv(channels, channels, 1));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i) transformer_blocks->push_back(TransformerBlock(channels, heads, context_dim));
  proj_out = register_module("proj_out", Zeroed(Conv(channels, channels, 1)));
}

torch::Tensor SpatialTransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                              const torch::Tensor& mask) {
  return Call({x, context, mask}, [this](const Tensors& in) { return Tensors{Body(in[0], in[1], in[2])}; })[0];
}

torch::Tensor SpatialTransformerImpl::Body(const torch::Tensor& x, const torch::Tensor& context,
                                           const torch::Tensor& mask) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  torch::Tensor tokens = proj_in->forward(norm->forward(x)).flatten(2).transpose(1, 2);  // [B, H*W, C]
  for (const auto& block : *transformer_blocks) {
    tokens = block->as<TransformerBlockImpl>()->forward(tokens, context, mask);         // [B, H*W, C]
  }
  return x + proj_out->forward(tokens.transpose(1, 2).reshape({B, C, H, W}));          // [B, C, H, W]
}

torch::Tensor UNetStepImpl::forward(const torch::Tensor& x, const torch::Tensor& emb, const torch::Tensor& context,
                                    const torch::Tensor& mask) {
  torch::Tensor h = x;
  if (!res.is_empty()) h = res->forward(h, emb);                   // [B, C', H, W]
  if (!attn.is_empty()) h = attn->forward(h, context, mask);      // [B, C', H, W]
  if (!down.is_empty()) h = down->forward(h);                     // [B, C', H/2, W/2]
  if (!up.is_empty()) {
    namespace F = torch::nn::functional;
    h = up->forward(F::interpolate(
        h, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest)));  // [B, C', 2H, 2W]
  }
  return h;
}

UNetImpl::UNetImpl(const UNetConfig& c) : config(c) {
  const int64_t mc = c.model_channels, emb_dim = 4 * mc;
  time_embed = register_module("time_embed", torch::nn::Sequential(torch::nn::Linear(mc, emb_dim), torch::nn::SiLU(),
                                                                    torch::nn::Linear(emb_dim, emb_dim)));
  if (c.aug_embed) {
    aug_embed = register_module("aug_embed", torch::nn::Sequential(torch::nn::Linear(mc, emb_dim), torch::nn::SiLU(),
                                                                   torch::nn::Linear(emb_dim, emb_dim)));
  }
  if (c.embed_dim > 0) {
    embed_proj = register_module("embed_proj", torch::nn::Linear(c.embed_dim, emb_dim));
    if (c.embed_tokens > 0) {
      embed_to_tokens = register_module("embed_to_tokens", torch::nn::Linear(c.embed_dim, c.embed_tokens * c.context_dim));
    }
  }
  conv_in = register_module("conv_in", Conv(c.in_channels, mc, 3));
  const UNetPlan plan = PlanUNet(c);
  auto make = [&](const UNetStepPlan& p) {
    UNetStep step;
    if (p.out > 0) step->res = step->register_module("res", TimestepResBlock(p.in, p.out, emb_dim, c.groups, c.dropout));
    if (p.attn) {
      step->attn = step->register_module("attn", SpatialTransformer(p.channels(), c.heads, c.transformer_depth,
                                                                    c.context_dim, c.groups));
    }
    if (p.down) step->down = step->register_module("down", Conv(p.channels(), p.channels(), 3, 2));
    if (p.up) step->up = step->register_module("up", Conv(p.channels(), p.channels(), 3));
    return step;
  };
  auto inputs = register_module("input_blocks", torch::nn::ModuleList());
  for (const UNetStepPlan& p : plan.input) {
    input_blocks.push_back(make(p));
    inputs->push_back(input_blocks.back());
  }
  const int64_t ch = plan.middle_channels;
  middle_res1 = register_module("middle_res1", TimestepResBlock(ch, ch, emb_dim, c.groups, c.dropout));
  middle_attn = register_module("middle_attn", SpatialTransformer(ch, c.heads, c.transformer_depth, c.context_dim, c.groups));
  middle_res2 = register_module("middle_res2", TimestepResBlock(ch, ch, emb_dim, c.groups, c.dropout));
  auto outputs = register_module("output_blocks", torch::nn::ModuleList());
  for (const UNetStepPlan& p : plan.output) {
    output_blocks.push_back(make(p));
    outputs->push_back(output_blocks.back());
  }
  const int64_t last = plan.output.back().out;  // channel_mult[0] x model_channels
  out_norm = register_module("out_norm", Normalize(last, c.groups));
  conv_out = register_module("conv_out", Zeroed(Conv(last, c.out_channels, 3)));
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& context,
                                const torch::Tensor& mask, const torch::Tensor& embed, const torch::Tensor& aug_t) {
  const int64_t B = x_t.size(0);
  torch::Tensor emb = time_embed->forward(TimestepSinusoids(t, config.model_channels));  // [B, 4mc]
  if (config.aug_embed) {
    TORCH_CHECK(aug_t.defined() && aug_t.size(0) == B, "UNet: the augmentation level [B] is part of its input");
    emb = emb + aug_embed->forward(TimestepSinusoids(aug_t, config.model_channels));  // [B, 4mc]
  }
  torch::Tensor ctx = context, ctx_mask = mask;
  if (config.embed_dim > 0) {
    TORCH_CHECK(embed.defined() && embed.size(1) == config.embed_dim, "UNet: an embedding [B, ", config.embed_dim,
                "] is part of its input");
    emb = emb + embed_proj->forward(embed);                                                         // [B, 4mc]
    if (config.embed_tokens > 0) {
      const torch::Tensor extra = embed_to_tokens->forward(embed).view({B, config.embed_tokens, config.context_dim});
      ctx = torch::cat({ctx, extra.to(ctx.dtype())}, 1);                                            // [B, L+K, Dc]
      ctx_mask = torch::cat({ctx_mask, torch::ones({B, config.embed_tokens}, ctx_mask.options())}, 1);  // [B, L+K]
    }
  }
  torch::Tensor h = conv_in->forward(x_t);  // [B, mc, H, W]
  std::vector<torch::Tensor> skips = {h};
  for (UNetStep& step : input_blocks) {
    h = step->forward(h, emb, ctx, ctx_mask);
    skips.push_back(h);
  }
  h = middle_res1->forward(h, emb);
  h = middle_attn->forward(h, ctx, ctx_mask);
  h = middle_res2->forward(h, emb);
  for (UNetStep& step : output_blocks) {
    h = step->forward(torch::cat({h, skips.back()}, 1), emb, ctx, ctx_mask);  // [B, C', H', W']
    skips.pop_back();
  }
  return conv_out->forward(torch::silu(out_norm->forward(h)));  // [B, Cout, H, W]
}

double UNetForwardFlops(const UNetConfig& c, int64_t image_size, int64_t batch, int64_t context_tokens) {
  const int64_t mc = c.model_channels, emb = 4 * mc, L = context_tokens + c.embed_tokens;
  auto res = [&](int64_t in, int64_t out, int64_t s) {
    return ConvFlops(in, out, 3, s, s) + ConvFlops(out, out, 3, s, s) + (in != out ? ConvFlops(in, out, 1, s, s) : 0) +
           2.0 * emb * out;
  };
  auto attn = [&](int64_t ch, int64_t s) {
    const double n = static_cast<double>(s * s);
    const double block = 2.0 * n * ch * ch * 4            // self: q, k, v, proj
                         + 4.0 * n * n * ch               // self: scores and values
                         + 2.0 * n * ch * ch * 2 + 2.0 * L * c.context_dim * ch * 2  // cross: q, proj; k, v
                         + 4.0 * n * L * ch               // cross: scores and values
                         + 2.0 * n * ch * 12 * ch;        // GEGLU feed-forward
    return 2.0 * ConvFlops(ch, ch, 1, s, s) + c.transformer_depth * block;
  };
  double f = (c.aug_embed ? 2 : 1) * (2.0 * mc * emb + 2.0 * emb * emb) +
             ConvFlops(c.in_channels, mc, 3, image_size, image_size);
  if (c.embed_dim > 0) f += 2.0 * c.embed_dim * emb + 2.0 * c.embed_dim * c.embed_tokens * c.context_dim;
  const UNetPlan plan = PlanUNet(c);
  for (const auto* path : {&plan.input, &plan.output}) {
    for (const UNetStepPlan& p : *path) {
      const int64_t s = image_size / p.factor, ch = p.channels();
      if (p.out > 0) f += res(p.in, p.out, s);
      if (p.attn) f += attn(ch, s);
      if (p.down) f += ConvFlops(ch, ch, 3, s / 2, s / 2);  // stride 2
      if (p.up) f += ConvFlops(ch, ch, 3, 2 * s, 2 * s);    // after nearest 2x
    }
  }
  const int64_t s = image_size / plan.middle_factor;
  f += 2 * res(plan.middle_channels, plan.middle_channels, s) + attn(plan.middle_channels, s);
  f += ConvFlops(plan.output.back().out, c.out_channels, 3, image_size, image_size);
  return f * static_cast<double>(batch);
}

}  // namespace loom::models

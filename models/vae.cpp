// The KL autoencoder and the patch discriminator (see vae.h).
#include "models/vae.h"

namespace loom::models {
namespace {

torch::nn::Conv2d Conv3(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1));
}

torch::nn::Conv2d Conv1(int64_t in, int64_t out) { return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)); }

// One level of the encoder or decoder: its ResNet blocks and its resampling (if any).
struct LevelImpl : torch::nn::Module {
  torch::nn::ModuleList block{nullptr};
  torch::nn::AnyModule resample;  // Downsample or Upsample; empty at the last level
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& b : *block) x = b->as<ResnetBlockImpl>()->forward(x);
    return resample.is_empty() ? x : resample.forward(x);
  }
};

}  // namespace

MidBlockImpl::MidBlockImpl(int64_t c, int64_t groups, double dropout, bool attention) {
  block_1 = register_module("block_1", ResnetBlock(c, c, groups, dropout));
  if (attention) attn_1 = register_module("attn_1", AttnBlock(c, groups));
  block_2 = register_module("block_2", ResnetBlock(c, c, groups, dropout));
}

torch::Tensor MidBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = block_1->forward(x);
  if (!attn_1.is_empty()) h = attn_1->forward(h);
  return block_2->forward(h);
}

EncoderImpl::EncoderImpl(const VaeOptions& o, int64_t in_channels) {
  const int64_t levels = static_cast<int64_t>(o.ch_mult.size());
  conv_in = register_module("conv_in", Conv3(in_channels, o.ch));
  down = register_module("down", torch::nn::ModuleList());
  int64_t block_in = o.ch;
  for (int64_t i = 0; i < levels; ++i) {
    auto level = std::make_shared<LevelImpl>();
    level->block = level->register_module("block", torch::nn::ModuleList());
    const int64_t block_out = o.ch * o.ch_mult[i];
    for (int r = 0; r < o.num_res_blocks; ++r) {
      level->block->push_back(ResnetBlock(block_in, block_out, o.groups, o.dropout));
      block_in = block_out;
    }
    if (i != levels - 1) level->resample = torch::nn::AnyModule(level->register_module("downsample", Downsample(block_in)));
    down->push_back(level);
  }
  mid = register_module("mid", MidBlock(block_in, o.groups, o.dropout, o.attention));
  norm_out = register_module("norm_out", Normalize(block_in, o.groups));
  conv_out = register_module("conv_out", Conv3(block_in, 2 * o.z_channels));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in->forward(x);                             // [B, ch, H, W]
  for (const auto& level : *down) h = level->as<LevelImpl>()->forward(h);  // [B, ch*mult, H/f, W/f]
  h = mid->forward(h);
  return conv_out->forward(torch::silu(norm_out->forward(h)));       // [B, 2z, H/f, W/f]
}

DecoderImpl::DecoderImpl(const VaeOptions& o, int64_t out_channels) {
  const int64_t levels = static_cast<int64_t>(o.ch_mult.size());
  int64_t block_in = o.ch * o.ch_mult.back();
  conv_in = register_module("conv_in", Conv3(o.z_channels, block_in));
  mid = register_module("mid", MidBlock(block_in, o.groups, o.dropout, o.attention));
  // Built from the lowest resolution up, stored with up[0] at full resolution (as
  // latent diffusion names them).
  std::vector<std::shared_ptr<LevelImpl>> levels_out(levels);
  for (int64_t i = levels - 1; i >= 0; --i) {
    auto level = std::make_shared<LevelImpl>();
    level->block = level->register_module("block", torch::nn::ModuleList());
    const int64_t block_out = o.ch * o.ch_mult[i];
    for (int r = 0; r <= o.num_res_blocks; ++r) {
      level->block->push_back(ResnetBlock(block_in, block_out, o.groups, o.dropout));
      block_in = block_out;
    }
    if (i != 0) level->resample = torch::nn::AnyModule(level->register_module("upsample", Upsample(block_in)));
    levels_out[i] = level;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto& level : levels_out) up->push_back(level);
  norm_out = register_module("norm_out", Normalize(block_in, o.groups));
  conv_out = register_module("conv_out", Conv3(block_in, out_channels));
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = mid->forward(conv_in->forward(z));  // [B, ch*mult[-1], h, w]
  for (int64_t i = static_cast<int64_t>(up->size()) - 1; i >= 0; --i) h = (*up)[i]->as<LevelImpl>()->forward(h);
  return conv_out->forward(torch::silu(norm_out->forward(h)));  // [B, C, h*f, w*f]
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeOptions& o, int64_t c) : options(o), channels(c) {
  encoder = register_module("encoder", Encoder(o, c));
  decoder = register_module("decoder", Decoder(o, c));
  quant_conv = register_module("quant_conv", Conv1(2 * o.z_channels, 2 * o.z_channels));
  post_quant_conv = register_module("post_quant_conv", Conv1(o.z_channels, o.z_channels));
}

torch::Tensor AutoencoderKLImpl::encode(const torch::Tensor& x) { return quant_conv->forward(encoder->forward(x)); }

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) {
  return decoder->forward(post_quant_conv->forward(z));
}

int64_t VaeFactor(const VaeOptions& o) { return int64_t{1} << (o.ch_mult.size() - 1); }

absl::Status CheckVae(const VaeOptions& o, int64_t size) {
  for (int m : o.ch_mult) {
    if ((o.ch * m) % o.groups != 0) {
      return absl::InvalidArgumentError("stage.model: channels " + std::to_string(o.ch * m) +
                                        " (ch x ch_mult) must be divisible by groups " + std::to_string(o.groups));
    }
  }
  if (size % VaeFactor(o) != 0) {
    return absl::InvalidArgumentError("data.image_size " + std::to_string(size) + " must be divisible by f = " +
                                      std::to_string(VaeFactor(o)) + " (2^(levels of stage.model.ch_mult - 1))");
  }
  return absl::OkStatus();
}

double VaeForwardFlops(const VaeOptions& o, int64_t channels, int64_t size) {
  const int64_t levels = static_cast<int64_t>(o.ch_mult.size());
  const auto resnet = [&](int64_t in, int64_t out, int64_t s) {
    return ConvFlops(in, out, 3, s, s) + ConvFlops(out, out, 3, s, s) + (in != out ? ConvFlops(in, out, 1, s, s) : 0);
  };
  const auto mid = [&](int64_t c, int64_t s) {
    const double n = static_cast<double>(s * s);
    return 2 * resnet(c, c, s) + (o.attention ? 4 * ConvFlops(c, c, 1, s, s) + 4 * n * n * c : 0);
  };
  double flops = ConvFlops(channels, o.ch, 3, size, size);  // encoder
  int64_t block_in = o.ch, s = size;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t block_out = o.ch * o.ch_mult[i];
    for (int r = 0; r < o.num_res_blocks; ++r, block_in = block_out) flops += resnet(block_in, block_out, s);
    if (i != levels - 1) {
      s /= 2;
      flops += ConvFlops(block_in, block_in, 3, s, s);
    }
  }
  flops += mid(block_in, s) + ConvFlops(block_in, 2 * o.z_channels, 3, s, s);
  flops += ConvFlops(o.z_channels, block_in, 3, s, s) + mid(block_in, s);  // decoder
  for (int64_t i = levels - 1; i >= 0; --i) {
    const int64_t block_out = o.ch * o.ch_mult[i];
    for (int r = 0; r <= o.num_res_blocks; ++r, block_in = block_out) flops += resnet(block_in, block_out, s);
    if (i != 0) {
      s *= 2;
      flops += ConvFlops(block_in, block_in, 3, s, s);
    }
  }
  return flops + ConvFlops(block_in, channels, 3, s, s);
}

PatchDiscriminatorImpl::PatchDiscriminatorImpl(int64_t in_channels, int64_t width, int64_t layers) {
  namespace nn = torch::nn;
  const auto conv = [](int64_t in, int64_t out, int64_t stride, bool bias) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, 4).stride(stride).padding(1).bias(bias));
  };
  const auto leaky = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)); };
  main = register_module("main", nn::Sequential());
  main->push_back(conv(in_channels, width, 2, true));
  main->push_back(leaky());
  int64_t mult = 1;
  for (int64_t n = 1; n <= layers; ++n) {
    const int64_t prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    main->push_back(conv(width * prev, width * mult, n < layers ? 2 : 1, false));
    main->push_back(nn::BatchNorm2d(width * mult));
    main->push_back(leaky());
  }
  main->push_back(conv(width * mult, 1, 1, true));
  // pix2pix's initialisation: N(0, 0.02) convolutions, N(1, 0.02) norm scales.
  torch::NoGradGuard no_grad;
  for (auto& m : main->children()) {
    if (auto* c = m->as<nn::Conv2dImpl>()) {
      c->weight.normal_(0.0, 0.02);
    } else if (auto* b = m->as<nn::BatchNorm2dImpl>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    }
  }
}

torch::Tensor PatchDiscriminatorImpl::forward(const torch::Tensor& x) { return main->forward(x); }

}  // namespace loom::models

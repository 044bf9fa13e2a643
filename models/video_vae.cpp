// The causal video autoencoder (see video_vae.h).
#include "models/video_vae.h"

#include <string>

namespace loom::models {
namespace {

namespace F = torch::nn::functional;

torch::nn::Conv3d Pointwise(int64_t in, int64_t out) { return torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 1)); }

// One level of the encoder or decoder: its ResNet blocks and its resampling (if any).
struct VideoLevelImpl : torch::nn::Module {
  torch::nn::ModuleList block{nullptr};
  torch::nn::AnyModule resample;  // CausalDownsample or CausalUpsample; empty at the end
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& b : *block) x = b->as<CausalResBlockImpl>()->forward(x);
    return resample.is_empty() ? x : resample.forward(x);
  }
};

// FLOPs of a kt x k x k convolution producing [cout, t, s, s].
double Conv3dFlops(int64_t cin, int64_t cout, int64_t kt, int64_t k, int64_t t, int64_t s) {
  return 2.0 * static_cast<double>(cin * cout * kt * k * k * t * s * s);
}

}  // namespace

CausalConv3dImpl::CausalConv3dImpl(int64_t in, int64_t out, int64_t kt_, int64_t k) : kt(kt_) {
  conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, {kt, k, k}).padding({0, k / 2, k / 2})));
}

torch::Tensor CausalConv3dImpl::forward(const torch::Tensor& x) {
  if (kt == 1) return conv->forward(x);
  // kt - 1 copies of the first frame before it: frame t sees frames t - kt + 1 .. t.
  const torch::Tensor past = x.narrow(2, 0, 1).expand({-1, -1, kt - 1, -1, -1});
  return conv->forward(torch::cat({past, x}, 2));
}

FrameGroupNormImpl::FrameGroupNormImpl(int64_t channels, int64_t groups) {
  norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(1e-6)));
}

torch::Tensor FrameGroupNormImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const torch::Tensor frames = x.transpose(1, 2).reshape({B * T, C, H, W});
  return norm->forward(frames).view({B, T, C, H, W}).transpose(1, 2);  // [B, C, T, H, W]
}

CausalResBlockImpl::CausalResBlockImpl(int64_t in, int64_t out, int64_t groups) {
  norm1 = register_module("norm1", FrameGroupNorm(in, groups));
  conv1 = register_module("conv1", CausalConv3d(in, out, 3, 3));
  norm2 = register_module("norm2", FrameGroupNorm(out, groups));
  conv2 = register_module("conv2", CausalConv3d(out, out, 3, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", Pointwise(in, out));
}

torch::Tensor CausalResBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv1->forward(torch::silu(norm1->forward(x)));
  h = conv2->forward(torch::silu(norm2->forward(h)));
  return (nin_shortcut.is_empty() ? x : nin_shortcut->forward(x)) + h;
}

CausalDownsampleImpl::CausalDownsampleImpl(int64_t channels, bool time_) : time(time_) {
  conv = register_module(
      "conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(channels, channels, {1, 3, 3}).stride({1, 2, 2})));
}

torch::Tensor CausalDownsampleImpl::forward(const torch::Tensor& x) {
  // As the image VAE's: pad bottom and right, then a stride-2 convolution.
  torch::Tensor h = conv->forward(F::pad(x, F::PadFuncOptions({0, 1, 0, 1, 0, 0})));  // [B, C, T, H/2, W/2]
  const int64_t T = h.size(2);
  if (!time || T == 1) return h;
  TORCH_CHECK((T - 1) % 2 == 0, "a temporal downsampling needs 1 + 2k frames, got ", T);
  const int64_t B = h.size(0), C = h.size(1), H = h.size(3), W = h.size(4);
  const torch::Tensor rest = h.narrow(2, 1, T - 1).reshape({B, C, (T - 1) / 2, 2, H, W}).mean(3);
  return torch::cat({h.narrow(2, 0, 1), rest}, 2);  // [B, C, 1 + (T - 1) / 2, H/2, W/2]
}

CausalUpsampleImpl::CausalUpsampleImpl(int64_t channels, bool time_) : time(time_) {
  conv = register_module("conv", CausalConv3d(channels, channels, 3, 3));
}

torch::Tensor CausalUpsampleImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x.repeat_interleave(2, 3).repeat_interleave(2, 4);  // [B, C, T, 2H, 2W]
  const int64_t T = h.size(2);
  if (time && T > 1) h = torch::cat({h.narrow(2, 0, 1), h.narrow(2, 1, T - 1).repeat_interleave(2, 2)}, 2);
  return conv->forward(h);  // [B, C, 1 + 2 (T - 1), 2H, 2W] when in time
}

VideoEncoderImpl::VideoEncoderImpl(const VideoVaeOptions& o, int64_t in_channels) {
  const int64_t levels = static_cast<int64_t>(o.ch_mult.size());
  conv_in = register_module("conv_in", CausalConv3d(in_channels, o.ch, 3, 3));
  down = register_module("down", torch::nn::ModuleList());
  int64_t block_in = o.ch;
  for (int64_t i = 0; i < levels; ++i) {
    auto level = std::make_shared<VideoLevelImpl>();
    level->block = level->register_module("block", torch::nn::ModuleList());
    const int64_t block_out = o.ch * o.ch_mult[i];
    for (int r = 0; r < o.num_res_blocks; ++r) {
      level->block->push_back(CausalResBlock(block_in, block_out, o.groups));
      block_in = block_out;
    }
    if (i != levels - 1) {
      level->resample = torch::nn::AnyModule(
          level->register_module("downsample", CausalDownsample(block_in, i < o.temporal_down)));
    }
    down->push_back(level);
  }
  mid_1 = register_module("mid_1", CausalResBlock(block_in, block_in, o.groups));
  mid_2 = register_module("mid_2", CausalResBlock(block_in, block_in, o.groups));
  norm_out = register_module("norm_out", FrameGroupNorm(block_in, o.groups));
  conv_out = register_module("conv_out", CausalConv3d(block_in, 2 * o.z_channels, 3, 3));
}

torch::Tensor VideoEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in->forward(x);                                       // [B, ch, T, H, W]
  for (const auto& level : *down) h = level->as<VideoLevelImpl>()->forward(h);  // [B, ch*mult, t, h, w]
  h = mid_2->forward(mid_1->forward(h));
  return conv_out->forward(torch::silu(norm_out->forward(h)));  // [B, 2z, t, h, w]
}

VideoDecoderImpl::VideoDecoderImpl(const VideoVaeOptions& o, int64_t out_channels) {
  const int64_t levels = static_cast<int64_t>(o.ch_mult.size());
  int64_t block_in = o.ch * o.ch_mult.back();
  conv_in = register_module("conv_in", CausalConv3d(o.z_channels, block_in, 3, 3));
  mid_1 = register_module("mid_1", CausalResBlock(block_in, block_in, o.groups));
  mid_2 = register_module("mid_2", CausalResBlock(block_in, block_in, o.groups));
  // Built from the lowest resolution up, stored with up[0] at full resolution. The
  // upsampling out of level i mirrors the encoder's downsampling into it (from i - 1).
  std::vector<std::shared_ptr<VideoLevelImpl>> levels_out(levels);
  for (int64_t i = levels - 1; i >= 0; --i) {
    auto level = std::make_shared<VideoLevelImpl>();
    level->block = level->register_module("block", torch::nn::ModuleList());
    const int64_t block_out = o.ch * o.ch_mult[i];
    for (int r = 0; r <= o.num_res_blocks; ++r) {
      level->block->push_back(CausalResBlock(block_in, block_out, o.groups));
      block_in = block_out;
    }
    if (i != 0) {
      level->resample = torch::nn::AnyModule(
          level->register_module("upsample", CausalUpsample(block_in, i - 1 < o.temporal_down)));
    }
    levels_out[i] = level;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto& level : levels_out) up->push_back(level);
  norm_out = register_module("norm_out", FrameGroupNorm(block_in, o.groups));
  conv_out = register_module("conv_out", CausalConv3d(block_in, out_channels, 3, 3));
}

torch::Tensor VideoDecoderImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_2->forward(mid_1->forward(conv_in->forward(z)));  // [B, ch*mult[-1], t, h, w]
  for (int64_t i = static_cast<int64_t>(up->size()) - 1; i >= 0; --i) h = (*up)[i]->as<VideoLevelImpl>()->forward(h);
  return conv_out->forward(torch::silu(norm_out->forward(h)));  // [B, C, T, H, W]
}

VideoAutoencoderImpl::VideoAutoencoderImpl(const VideoVaeOptions& o, int64_t c) : options(o), channels(c) {
  encoder = register_module("encoder", VideoEncoder(o, c));
  decoder = register_module("decoder", VideoDecoder(o, c));
  quant_conv = register_module("quant_conv", Pointwise(2 * o.z_channels, 2 * o.z_channels));
  post_quant_conv = register_module("post_quant_conv", Pointwise(o.z_channels, o.z_channels));
}

torch::Tensor VideoAutoencoderImpl::encode(const torch::Tensor& x) { return quant_conv->forward(encoder->forward(x)); }

torch::Tensor VideoAutoencoderImpl::decode(const torch::Tensor& z) {
  return decoder->forward(post_quant_conv->forward(z));
}

int64_t VideoVaeSpatialFactor(const VideoVaeOptions& o) { return int64_t{1} << (o.ch_mult.size() - 1); }
int64_t VideoVaeTemporalFactor(const VideoVaeOptions& o) { return int64_t{1} << o.temporal_down; }

int64_t LatentFrames(const VideoVaeOptions& o, int64_t frames) { return 1 + (frames - 1) / VideoVaeTemporalFactor(o); }

absl::Status CheckVideoFrames(const VideoVaeOptions& o, int64_t frames) {
  const int64_t s = VideoVaeTemporalFactor(o);
  if (frames >= 1 && (frames - 1) % s == 0) return absl::OkStatus();
  std::string counts;
  for (int64_t k = 0; k < 5; ++k) counts += std::to_string(1 + k * s) + ", ";
  return absl::InvalidArgumentError("a clip of " + std::to_string(frames) + " frames does not fit this video VAE " +
                                    "(temporal factor " + std::to_string(s) + "): it takes 1 + k x " +
                                    std::to_string(s) + " frames (" + counts + "...)");
}

absl::Status CheckVideoVae(const VideoVaeOptions& o, int64_t size) {
  for (int m : o.ch_mult) {
    if ((o.ch * m) % o.groups != 0) {
      return absl::InvalidArgumentError("stage.model: channels " + std::to_string(o.ch * m) +
                                        " (ch x ch_mult) must be divisible by groups " + std::to_string(o.groups));
    }
  }
  if (size % VideoVaeSpatialFactor(o) != 0) {
    return absl::InvalidArgumentError("data.image_size " + std::to_string(size) + " must be divisible by " +
                                      std::to_string(VideoVaeSpatialFactor(o)) +
                                      " (2^(levels of stage.model.ch_mult - 1))");
  }
  return absl::OkStatus();
}

double VideoVaeForwardFlops(const VideoVaeOptions& o, int64_t channels, int64_t frames, int64_t size) {
  const int64_t levels = static_cast<int64_t>(o.ch_mult.size());
  const auto resnet = [](int64_t in, int64_t out, int64_t t, int64_t s) {
    return Conv3dFlops(in, out, 3, 3, t, s) + Conv3dFlops(out, out, 3, 3, t, s) +
           (in != out ? Conv3dFlops(in, out, 1, 1, t, s) : 0);
  };
  double total = 0;
  int64_t t = frames, s = size, c = o.ch;
  // Encoder.
  total += Conv3dFlops(channels, o.ch, 3, 3, t, s);
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t out = o.ch * o.ch_mult[i];
    for (int r = 0; r < o.num_res_blocks; ++r, c = out) total += resnet(c, out, t, s);
    if (i != levels - 1) {
      s /= 2;
      total += Conv3dFlops(c, c, 1, 3, t, s);
      if (i < o.temporal_down) t = 1 + (t - 1) / 2;
    }
  }
  total += 2 * resnet(c, c, t, s) + Conv3dFlops(c, 2 * o.z_channels, 3, 3, t, s);
  // The 1x1x1 convolutions on either side of the latent.
  total += Conv3dFlops(2 * o.z_channels, 2 * o.z_channels, 1, 1, t, s) + Conv3dFlops(o.z_channels, o.z_channels, 1, 1, t, s);
  // Decoder.
  total += Conv3dFlops(o.z_channels, c, 3, 3, t, s) + 2 * resnet(c, c, t, s);
  for (int64_t i = levels - 1; i >= 0; --i) {
    const int64_t out = o.ch * o.ch_mult[i];
    for (int r = 0; r <= o.num_res_blocks; ++r, c = out) total += resnet(c, out, t, s);
    if (i != 0) {
      s *= 2;
      if (i - 1 < o.temporal_down) t = 1 + 2 * (t - 1);
      total += Conv3dFlops(c, c, 3, 3, t, s);
    }
  }
  return total + Conv3dFlops(c, channels, 3, 3, t, s);
}

}  // namespace loom::models

// A causal video autoencoder (after the causal 3-D VAEs of Open-Sora-Plan and CogVideoX):
// every convolution pads time on the past side only, by repeating the first frame, and
// GroupNorm takes its statistics per frame, so frame t of the output depends on input
// frames 0..t alone. The first frame is therefore encoded as an image is, and a clip of
// 1 + k s frames becomes 1 + k latent frames (s = 2^temporal_down): each temporal
// downsampling keeps the first frame and averages the following ones in pairs; each
// temporal upsampling keeps the first and repeats the others. Space shrinks by 2 at every
// level but the last. Layout inside: [B, C, T, H, W].
#pragma once

#include <torch/torch.h>

#include <vector>

#include "absl/status/status.h"
#include "models/options.h"

namespace loom::models {

// A k_t x k x k convolution, causal in time (first frame repeated), zero-padded in space.
class CausalConv3dImpl : public torch::nn::Module {
 public:
  CausalConv3dImpl(int64_t in, int64_t out, int64_t kt, int64_t k);
  torch::Tensor forward(const torch::Tensor& x);  // [B, Cin, T, H, W] -> [B, Cout, T, H, W]
  int64_t kt;
  torch::nn::Conv3d conv{nullptr};
};
TORCH_MODULE(CausalConv3d);

// GroupNorm over each frame on its own (statistics never mix frames).
class FrameGroupNormImpl : public torch::nn::Module {
 public:
  FrameGroupNormImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, T, H, W]
  torch::nn::GroupNorm norm{nullptr};
};
TORCH_MODULE(FrameGroupNorm);

// Two norm-swish-causal 3x3x3 convolutions, with a 1x1x1 shortcut when the width changes.
class CausalResBlockImpl : public torch::nn::Module {
 public:
  CausalResBlockImpl(int64_t in, int64_t out, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);
  FrameGroupNorm norm1{nullptr}, norm2{nullptr};
  CausalConv3d conv1{nullptr}, conv2{nullptr};
  torch::nn::Conv3d nin_shortcut{nullptr};
};
TORCH_MODULE(CausalResBlock);

// Halves H and W (a stride-2 3x3 convolution per frame, padded bottom and right), and T
// when `time` (first frame kept, the rest averaged in pairs).
class CausalDownsampleImpl : public torch::nn::Module {
 public:
  CausalDownsampleImpl(int64_t channels, bool time);
  torch::Tensor forward(const torch::Tensor& x);
  bool time;
  torch::nn::Conv3d conv{nullptr};
};
TORCH_MODULE(CausalDownsample);

// Doubles H and W (nearest), and T when `time` (first frame kept, the rest repeated),
// then a causal 3x3x3 convolution.
class CausalUpsampleImpl : public torch::nn::Module {
 public:
  CausalUpsampleImpl(int64_t channels, bool time);
  torch::Tensor forward(const torch::Tensor& x);
  bool time;
  CausalConv3d conv{nullptr};
};
TORCH_MODULE(CausalUpsample);

class VideoEncoderImpl : public torch::nn::Module {
 public:
  VideoEncoderImpl(const VideoVaeOptions& options, int64_t in_channels);
  // [B, C, T, H, W] -> posterior moments [B, 2z, t, h, w].
  torch::Tensor forward(const torch::Tensor& x);
  CausalConv3d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};  // per level: {block: CausalResBlocks, downsample}
  CausalResBlock mid_1{nullptr}, mid_2{nullptr};
  FrameGroupNorm norm_out{nullptr};
};
TORCH_MODULE(VideoEncoder);

class VideoDecoderImpl : public torch::nn::Module {
 public:
  VideoDecoderImpl(const VideoVaeOptions& options, int64_t out_channels);
  // [B, z, t, h, w] -> [B, C, T, H, W].
  torch::Tensor forward(const torch::Tensor& z);
  CausalConv3d conv_in{nullptr}, conv_out{nullptr};
  CausalResBlock mid_1{nullptr}, mid_2{nullptr};
  torch::nn::ModuleList up{nullptr};  // per level, up[0] at full resolution
  FrameGroupNorm norm_out{nullptr};
};
TORCH_MODULE(VideoDecoder);

class VideoAutoencoderImpl : public torch::nn::Module {
 public:
  VideoAutoencoderImpl(const VideoVaeOptions& options, int64_t channels);
  // Posterior moments [B, 2z, t, h, w] of clips [B, C, T, H, W].
  torch::Tensor encode(const torch::Tensor& x);
  // Clips [B, C, T, H, W] (not clamped) of latents [B, z, t, h, w].
  torch::Tensor decode(const torch::Tensor& z);

  VideoVaeOptions options;
  int64_t channels;
  VideoEncoder encoder{nullptr};
  VideoDecoder decoder{nullptr};
  torch::nn::Conv3d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(VideoAutoencoder);

int64_t VideoVaeSpatialFactor(const VideoVaeOptions& options);
int64_t VideoVaeTemporalFactor(const VideoVaeOptions& options);
// Latent frames of a clip of `frames` frames: 1 + (frames - 1) / s.
int64_t LatentFrames(const VideoVaeOptions& options, int64_t frames);
// Whether clips of `frames` frames fit (1 + k s); the error names the counts that do.
absl::Status CheckVideoFrames(const VideoVaeOptions& options, int64_t frames);
// Channel counts against the groups and the side against the spatial factor.
absl::Status CheckVideoVae(const VideoVaeOptions& options, int64_t size);
// FLOPs of one encode + decode of a clip of `frames` frames of side `size`.
double VideoVaeForwardFlops(const VideoVaeOptions& options, int64_t channels, int64_t frames, int64_t size);

}  // namespace loom::models

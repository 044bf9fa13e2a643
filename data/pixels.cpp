// Stored pixels to model pixels (see pixels.h).
#include "data/pixels.h"

namespace loom::data {

torch::Tensor ModelPixels(const uint8_t* raw, int64_t n, const SampleSpec& spec, int size, const std::string& fit,
                          const std::vector<bool>& flips) {
  const int64_t bytes = spec.bytes();
  const uint8_t* dst = raw;
  // Padded and flipped in one pass. Plain loops on purpose: torch ops here would start OpenMP teams from
  // loader threads, whose spinning takes cores from the HDF5 reads and the trainer.
  const bool video = spec.modality == Modality::kVideo;
  const int64_t frames = n * spec.frames;
  const int H = spec.height, W = spec.width, C = spec.channels;
  const bool pad = size > 0 && fit == "pad" && (size != H || size != W);
  const int out_h = pad ? size : H, out_w = pad ? size : W;
  const int top = (out_h - H) / 2, left = (out_w - W) / 2;
  torch::Tensor x = pad ? torch::full({frames, C, out_h, out_w}, -1.0f)
                        : torch::empty({frames, C, out_h, out_w}, torch::kFloat32);
  float* out = x.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const bool flip = !flips.empty() && flips[i];
    for (int t = 0; t < spec.frames; ++t) {
      const uint8_t* src = dst + i * bytes + static_cast<int64_t>(t) * H * W * C;
      float* frame = out + (i * spec.frames + t) * C * out_h * out_w;
      for (int c = 0; c < C; ++c) {
        for (int y = 0; y < H; ++y) {
          float* row = frame + (static_cast<int64_t>(c) * out_h + y + top) * out_w + left;
          const uint8_t* in = src + static_cast<int64_t>(y) * W * C + c;
          for (int px = 0; px < W; ++px) {
            row[flip ? W - 1 - px : px] = static_cast<float>(in[px * C]) * (1.0f / 127.5f) - 1.0f;
          }
        }
      }
    }
  }
  if (size > 0 && !pad && (size != H || size != W)) {
    x = torch::nn::functional::interpolate(
        x, torch::nn::functional::InterpolateFuncOptions()
               .size(std::vector<int64_t>{size, size})
               .mode(torch::kBilinear)
               .align_corners(false)
               .antialias(true));
  }
  if (video) x = x.view({n, spec.frames, x.size(1), x.size(2), x.size(3)});
  return x;
}

torch::Tensor Downsample(const torch::Tensor& images, int64_t size) {
  namespace F = torch::nn::functional;
  return F::interpolate(images, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{size, size})
                                    .mode(torch::kBilinear)
                                    .align_corners(false)
                                    .antialias(true));
}

torch::Tensor UpsampleBicubic(const torch::Tensor& images, int64_t size) {
  namespace F = torch::nn::functional;
  return F::interpolate(images, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{size, size})
                                    .mode(torch::kBicubic)
                                    .align_corners(false))
      .clamp(-1, 1);
}

}  // namespace loom::data

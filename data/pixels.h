// Stored samples as a model sees them: uint8 [n, (T,) H, W, C] -> float [n, (T,) C, S, S]
// in [-1, 1], centred on a black canvas (fit pad) or resized with antialiasing (fit
// resize) to side S, each flipped horizontally where asked. The loader and
// `loom data encode` share it, so a cache encodes exactly what training would see.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/shard_format.h"

namespace loom::data {

// `size` 0 keeps the stored size; `flips` empty flips nothing.
torch::Tensor ModelPixels(const uint8_t* raw, int64_t n, const SampleSpec& spec, int size, const std::string& fit,
                          const std::vector<bool>& flips);

// Images [B, C, H, W] shrunk to side `size` with antialiasing, as fit resize shrinks the
// stored images: how a super-resolution stage makes its low-resolution input.
torch::Tensor Downsample(const torch::Tensor& images, int64_t size);
// Images [B, C, h, w] enlarged to side `size` by bicubic interpolation, clamped to
// [-1, 1]: a super-resolution stage's conditioning and the baseline it is measured by.
torch::Tensor UpsampleBicubic(const torch::Tensor& images, int64_t size);

}  // namespace loom::data

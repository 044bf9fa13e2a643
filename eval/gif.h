// Video clips as pictures: an animated GIF that loops forever (giflib), and a PNG strip
// with one row per clip and its frames left to right.
#pragma once

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"

namespace loom::eval {

// frames: [T, C, H, W] in [-1, 1], C = 1 (grayscale, a 256-level gray palette) or 3 (RGB,
// mapped to the nearest entry of a fixed 6x7x6 colour cube). delay_cs: the time each frame
// shows, in hundredths of a second (1..65535). scale: nearest-neighbour upscaling, so a
// 32x32 clip is big enough to see. The file appears whole or not at all.
absl::Status WriteGif(const std::string& path, const torch::Tensor& frames, int delay_cs, int scale = 1);

// clips: [N, T, C, H, W] in [-1, 1]; one PNG row per clip, its T frames left to right,
// each pixel repeated `scale` times across and down.
absl::Status WriteStrip(const std::string& path, const torch::Tensor& clips, int scale = 1);

// Clips [N, T, C, H, W] side by side, `columns` per row (gaps of -1): one clip [T, C, H', W']
// to animate several at once.
torch::Tensor TileClips(const torch::Tensor& clips, int columns);

}  // namespace loom::eval

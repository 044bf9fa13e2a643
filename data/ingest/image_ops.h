// Pixel helpers shared by the dataset makers: decoding image files to RGB, centre-crop
// and resize to a square, and pasting a grayscale sprite onto a canvas.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom::data {

// An 8-bit image, row-major [height, width, channels].
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;

  uint8_t* at(int x, int y) {
    return pixels.data() + (static_cast<size_t>(y) * width + x) * channels;
  }
  const uint8_t* at(int x, int y) const {
    return pixels.data() + (static_cast<size_t>(y) * width + x) * channels;
  }
};

// Decodes a PNG or JPEG (any of stb_image's formats) to 3-channel RGB: grayscale is
// expanded, and alpha is composited over white, since transparent areas of product
// shots and icons are meant to be seen on a white page. Errors say why stb_image failed.
absl::StatusOr<Image> DecodeToRgb(const std::string& path);

// The largest centred square of `image`, resized to size x size with a filter that
// averages when shrinking (Mitchell) and interpolates when growing (Catmull-Rom), in
// sRGB so edges do not darken.
absl::StatusOr<Image> CentreCropResize(const Image& image, int size);

// Pastes a grayscale `sprite` onto a one-channel `canvas` with its top-left corner at
// (x, y), keeping the brighter pixel; the parts outside the canvas are clipped.
void PasteMax(const Image& sprite, int x, int y, Image* canvas);

}  // namespace loom::data

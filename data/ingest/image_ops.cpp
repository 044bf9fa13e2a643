// Image decoding, crop/resize and pasting (see image_ops.h). The one translation unit
// that compiles stb_image and stb_image_resize.
#include "data/ingest/image_ops.h"

#include <algorithm>
#include <cstring>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG  // readable reasons ("Corrupt JPEG") for error messages
#include "stb_image.h"        // defines: stbi_load, stbi_failure_reason, stbi_image_free
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "stb_image_resize.h"  // defines: stbir_resize_uint8_srgb

namespace loom::data {

absl::StatusOr<Image> DecodeToRgb(const std::string& path) {
  int width = 0, height = 0, channels_in_file = 0;
  // Always ask for RGBA: one code path composites every kind of input.
  uint8_t* rgba = stbi_load(path.c_str(), &width, &height, &channels_in_file, 4);
  if (rgba == nullptr) {
    return absl::InvalidArgumentError(std::string("cannot decode image (") + stbi_failure_reason() +
                                      "); PNG and JPEG files are supported");
  }
  Image out;
  out.width = width;
  out.height = height;
  out.channels = 3;
  out.pixels.resize(static_cast<size_t>(width) * height * 3);
  const size_t n = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t a = rgba[4 * i + 3];
    for (int c = 0; c < 3; ++c) {
      // Over white: c*a + 255*(1-a), rounded; opaque pixels are unchanged.
      out.pixels[3 * i + c] =
          static_cast<uint8_t>((rgba[4 * i + c] * a + 255 * (255 - a) + 127) / 255);
    }
  }
  stbi_image_free(rgba);
  return out;
}

absl::StatusOr<Image> CentreCropResize(const Image& image, int size) {
  const int side = std::min(image.width, image.height);
  const int x0 = (image.width - side) / 2;
  const int y0 = (image.height - side) / 2;
  const int stride = image.width * image.channels;
  const uint8_t* crop = image.at(x0, y0);
  Image out;
  out.width = size;
  out.height = size;
  out.channels = image.channels;
  out.pixels.resize(static_cast<size_t>(size) * size * image.channels);
  if (side == size) {
    // Already the right size: copy rows so the pixels are exactly those of the file.
    for (int y = 0; y < size; ++y) {
      std::memcpy(out.at(0, y), crop + static_cast<size_t>(y) * stride,
                  static_cast<size_t>(size) * image.channels);
    }
    return out;
  }
  if (!stbir_resize_uint8_srgb(crop, side, side, stride, out.pixels.data(), size, size, 0,
                               image.channels, STBIR_ALPHA_CHANNEL_NONE, 0)) {
    return absl::ResourceExhaustedError("out of memory resizing a " + std::to_string(side) + "x" +
                                        std::to_string(side) + " image");
  }
  return out;
}

void PasteMax(const Image& sprite, int x, int y, Image* canvas) {
  for (int sy = 0; sy < sprite.height; ++sy) {
    const int cy = y + sy;
    if (cy < 0 || cy >= canvas->height) continue;
    for (int sx = 0; sx < sprite.width; ++sx) {
      const int cx = x + sx;
      if (cx < 0 || cx >= canvas->width) continue;
      uint8_t* dst = canvas->at(cx, cy);
      *dst = std::max(*dst, *sprite.at(sx, sy));
    }
  }
}

}  // namespace loom::data

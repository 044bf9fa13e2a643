// PNG writing (see image_io.h).
#include "core/image_io.h"

#define STB_IMAGE_WRITE_STATIC  // file-local symbols: other units may embed stb too
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include "core/fs.h"

namespace loom {
namespace {

void Append(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

}  // namespace

absl::Status WritePng(const std::string& path, const uint8_t* pixels, int width, int height,
                      int channels) {
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3 && channels != 4)) {
    return absl::InvalidArgumentError("cannot write a " + std::to_string(width) + "x" +
                                      std::to_string(height) + "x" + std::to_string(channels) + " PNG");
  }
  std::string png;
  if (stbi_write_png_to_func(Append, &png, width, height, channels, pixels, width * channels) == 0) {
    return absl::InternalError("PNG encoding failed for " + path);
  }
  return WriteFileAtomic(path, png);
}

}  // namespace loom

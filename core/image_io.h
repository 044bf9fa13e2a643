// PNG output for sample grids (stb_image_write; written atomically).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace loom {

// Writes `width` x `height` pixels of `channels` (1, 3 or 4) interleaved uint8 values.
absl::Status WritePng(const std::string& path, const uint8_t* pixels, int width, int height,
                      int channels);

}  // namespace loom

// Sample shapes, checksums and UTF-8 validation of the shard format (see shard_format.h).
#include "data/shard_format.h"

#include <zlib.h>

#include <algorithm>

namespace loom::data {

std::string ModalityName(Modality m) { return m == Modality::kImage ? "image" : "video"; }

absl::Status ParseModality(std::string_view name, Modality* out) {
  if (name == "image") {
    *out = Modality::kImage;
  } else if (name == "video") {
    *out = Modality::kVideo;
  } else {
    return absl::InvalidArgumentError("unknown modality '" + std::string(name) +
                                      "' (expected image or video)");
  }
  return absl::OkStatus();
}

std::vector<int64_t> SampleSpec::dims() const {
  if (modality == Modality::kImage) return {height, width, channels};
  return {frames, height, width, channels};
}

std::string SampleSpec::ToString() const {
  std::string s = ModalityName(modality) + " ";
  if (modality == Modality::kVideo) s += std::to_string(frames) + "x";
  return s + std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels);
}

absl::Status SampleSpec::Validate() const {
  if (height < 1 || width < 1 || height > 16384 || width > 16384) {
    return absl::InvalidArgumentError("sample size " + ToString() + " is out of range");
  }
  if (channels != 1 && channels != 3 && channels != 4) {
    return absl::InvalidArgumentError("samples must have 1, 3 or 4 channels, not " +
                                      std::to_string(channels));
  }
  if (frames < 1 || (modality == Modality::kImage && frames != 1)) {
    return absl::InvalidArgumentError("frame count " + std::to_string(frames) +
                                      " does not fit modality " + ModalityName(modality));
  }
  return absl::OkStatus();
}

int64_t CacheSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint32_t SampleChecksum(const uint8_t* pixels, int64_t bytes, std::string_view caption,
                        int64_t label, const float* caches, int64_t cache_values) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes 32-bit lengths: feed large samples in pieces.
  for (int64_t done = 0; done < bytes;) {
    const uInt n = static_cast<uInt>(std::min<int64_t>(bytes - done, 1 << 30));
    crc = crc32(crc, pixels + done, n);
    done += n;
  }
  crc = crc32(crc, reinterpret_cast<const Bytef*>(caption.data()), static_cast<uInt>(caption.size()));
  unsigned char le[8];
  const uint64_t u = static_cast<uint64_t>(label);
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(u >> (8 * i));
  crc = crc32(crc, le, 8);
  // Cache values as stored: float32, little-endian (this machine's order; loom builds on
  // little-endian hosts only).
  const auto* raw = reinterpret_cast<const Bytef*>(caches);
  const int64_t raw_bytes = cache_values * static_cast<int64_t>(sizeof(float));
  for (int64_t done = 0; done < raw_bytes;) {
    const uInt n = static_cast<uInt>(std::min<int64_t>(raw_bytes - done, 1 << 30));
    crc = crc32(crc, raw + done, n);
    done += n;
  }
  return static_cast<uint32_t>(crc);
}

bool IsValidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= n || (s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace loom::data

// Shard format (docs/shard-format.md): what one sample looks like (modality and shape),
// the names of datasets and attributes, and the per-sample checksum. Version 1 holds
// pixels, captions and labels; version 2 adds caches, float32 datasets of what a frozen
// model computed per sample (`loom data encode`).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "core/status.h"

namespace loom::data {

inline constexpr char kShardFormat[] = "loom-shard";
inline constexpr char kManifestFormat[] = "loom-shards";
inline constexpr int kShardVersion = 1;       // written when a dataset has no caches
inline constexpr int kCacheShardVersion = 2;  // written when it has caches
inline constexpr char kManifestFile[] = "manifest.json";

// Dataset and attribute names inside a shard.
inline constexpr char kImages[] = "images";        // uint8 [N, H, W, C]
inline constexpr char kVideos[] = "videos";        // uint8 [N, T, H, W, C]
inline constexpr char kCaptions[] = "captions";    // variable-length UTF-8 strings [N]
inline constexpr char kLabels[] = "labels";        // int64 [N], optional
inline constexpr char kChecksums[] = "checksums";  // uint32 [N], CRC-32 of each sample

enum class Modality { kImage, kVideo };

std::string ModalityName(Modality m);
absl::Status ParseModality(std::string_view name, Modality* out);

// The shape of one sample's pixels.
struct SampleSpec {
  Modality modality = Modality::kImage;
  int frames = 1;  // 1 for images
  int height = 0;
  int width = 0;
  int channels = 1;

  int64_t bytes() const {
    return static_cast<int64_t>(frames) * height * width * channels;
  }
  // Per-sample dims as stored: [H, W, C] or [T, H, W, C].
  std::vector<int64_t> dims() const;
  std::string ToString() const;  // "image 28x28x1" or "video 16x32x32x3"
  absl::Status Validate() const;
  bool operator==(const SampleSpec& o) const {
    return modality == o.modality && frames == o.frames && height == o.height &&
           width == o.width && channels == o.channels;
  }
};

// One cache dataset: float32 values of `shape` per sample, and the frozen model that
// computed them ({"kind", "export", "hash"}), so a stage can refuse another model's.
struct CacheSpec {
  std::string name;            // "latents"; "<name>_flipped" holds the encoding of the flipped image
  std::vector<int64_t> shape;  // of one sample
  std::map<std::string, std::string> producer;  // recorded in the manifest, not in the shards
  int64_t numel() const;
  bool operator==(const CacheSpec& o) const { return name == o.name && shape == o.shape; }
};

// CRC-32 over a sample's pixels, caption bytes and label (8 bytes, little-endian), then
// (version 2) its cache values' bytes in manifest order: stored per sample so a reader
// can name the exact sample a flipped byte damaged.
uint32_t SampleChecksum(const uint8_t* pixels, int64_t bytes, std::string_view caption,
                        int64_t label, const float* caches = nullptr, int64_t cache_values = 0);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or bytes past U+10FFFF).
bool IsValidUtf8(std::string_view text);

}  // namespace loom::data

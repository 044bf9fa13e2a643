// manifest.json: the list of a dataset directory's shards with their sample counts,
// byte sizes and CRC-32 checksums, written last when a dataset is complete.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "data/shard_format.h"

namespace loom::data {

struct ShardEntry {
  std::string file;  // name relative to the dataset directory
  int64_t count = 0;
  int64_t bytes = 0;
  uint32_t crc32 = 0;  // of the whole file's bytes
};

struct Manifest {
  SampleSpec spec;
  int64_t total = 0;
  bool has_labels = false;
  std::vector<std::string> label_names;  // label i's name, when labels have names
  std::string source;                    // what made it: "fashion-mnist train", ...
  std::vector<ShardEntry> shards;
  // Version 2: the cache datasets of every shard, each with the frozen model that
  // computed it. A dataset may carry caches of several models (VAE latents and a text
  // encoder's tokens).
  std::vector<CacheSpec> caches;

  int version() const { return caches.empty() ? kShardVersion : kCacheShardVersion; }
  const CacheSpec* FindCache(const std::string& name) const;
  int64_t cache_values() const;  // floats of all caches of one sample

  std::string ToJson() const;
};

// Reads and checks DIR/manifest.json (format, version, counts adding up).
absl::StatusOr<Manifest> ReadManifest(const std::string& dir);

// Writes DIR/manifest.json atomically.
absl::Status WriteManifest(const std::string& dir, const Manifest& manifest);

// CRC-32 and size of a whole file.
absl::Status FileCrc32(const std::string& path, uint32_t* crc, int64_t* bytes);

}  // namespace loom::data

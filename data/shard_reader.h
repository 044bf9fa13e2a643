// Reads samples from one shard file (format 1 or 2), checking its schema when opened and
// each sample's checksum when read, so damage is reported with file and sample.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/hdf5_util.h"
#include "data/shard_format.h"

namespace loom::data {

struct Sample {
  std::vector<uint8_t> pixels;  // spec.bytes() values in [T,]H,W,C order
  std::string caption;
  int64_t label = -1;
  std::vector<float> caches;    // every cache's values, in manifest order
};

class ShardReader {
 public:
  // Opens `path` and checks format, version, modality, dataset shapes and dtypes.
  // `expect` (optional) is the sample spec the manifest promises, `caches` the cache
  // datasets it promises (a version-2 shard must hold exactly these).
  static absl::StatusOr<std::unique_ptr<ShardReader>> Open(const std::string& path,
                                                           const SampleSpec* expect = nullptr,
                                                           const std::vector<CacheSpec>& caches = {});
  ~ShardReader();

  int64_t size() const { return count_; }
  const SampleSpec& spec() const { return spec_; }
  bool has_labels() const { return labels_.valid(); }
  const std::string& path() const { return path_; }
  // Every caption of the shard (read at Open; not checked against the checksums).
  const std::vector<std::string>& captions() const { return caption_cache_; }

  // Reads sample `index` into `out`, verifying its checksum and caption encoding.
  absl::Status Read(int64_t index, Sample* out) const;
  // The same into caller-owned memory: spec().bytes() pixels at `pixels` and, when the
  // shard has caches, cache_values() floats at `caches` (which must then be given).
  absl::Status ReadInto(int64_t index, uint8_t* pixels, std::string* caption, int64_t* label,
                        float* caches = nullptr) const;
  int64_t cache_values() const { return cache_values_; }

 private:
  ShardReader() = default;
  absl::Status Bad(int64_t index, const std::string& what) const;

  // Captions, labels and checksums are small: read once at Open, so a sample read is
  // one HDF5 call for its pixels.
  absl::Status LoadMetadata();

  std::string path_;
  SampleSpec spec_;
  std::vector<std::string> caption_cache_;
  std::vector<int64_t> label_cache_;
  std::vector<uint32_t> checksum_cache_;
  int64_t count_ = 0;
  h5::Handle file_;
  h5::Handle pixels_;
  h5::Handle captions_;
  h5::Handle labels_;
  h5::Handle checksums_;
  h5::Handle caption_type_;
  std::vector<CacheSpec> caches_;
  std::vector<h5::Handle> cache_sets_;
  int64_t cache_values_ = 0;
};

}  // namespace loom::data

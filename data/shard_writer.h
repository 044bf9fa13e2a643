// Writes a dataset directory of shard-format-v1 HDF5 files plus manifest.json.
// Each shard is written under a temporary name and renamed when complete; the
// manifest is written last, so a directory with a manifest is a complete dataset.
//
//   ASSIGN_OR_RETURN(auto writer, ShardWriter::Create(spec, {.dir = "data/x/train"}));
//   RETURN_IF_ERROR(writer->Add(pixels, "a red circle", /*label=*/2));
//   ASSIGN_OR_RETURN(Manifest m, writer->Finish());
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "data/manifest.h"
#include "data/shard_format.h"

namespace loom::data {

struct ShardWriterOptions {
  std::string dir;                       // created if missing; must hold no manifest yet
  std::string prefix = "shard";          // files are <prefix>-00000.h5, ...
  int64_t samples_per_shard = 0;         // 0: about 64 MiB of pixels, at most 4096
  int gzip = 0;                          // 0 = no compression, 1..9 = gzip level
  bool labels = false;                   // store a labels dataset
  std::vector<std::string> label_names;  // names of label values, for the manifest
  std::string source;                    // what made the data, for the manifest
  // Cache datasets (shard format 2), each with the model that computed it.
  std::vector<CacheSpec> caches;
};

class ShardWriter {
 public:
  static absl::StatusOr<std::unique_ptr<ShardWriter>> Create(const SampleSpec& spec,
                                                             ShardWriterOptions options);
  ~ShardWriter();

  // Appends one sample: spec.bytes() pixels in [T,]H,W,C order, a UTF-8 caption, its
  // label (ignored unless options.labels) and, with caches, the values of every cache
  // concatenated in options.caches order.
  absl::Status Add(const uint8_t* pixels, std::string_view caption, int64_t label = -1,
                   const float* caches = nullptr);

  // Writes the last shard and the manifest.
  absl::StatusOr<Manifest> Finish();

  int64_t count() const { return total_; }

 private:
  ShardWriter(const SampleSpec& spec, ShardWriterOptions options);
  absl::Status FlushShard();

  SampleSpec spec_;
  ShardWriterOptions options_;
  int64_t per_shard_ = 0;
  int64_t total_ = 0;
  bool finished_ = false;
  std::vector<uint8_t> pixels_;
  std::vector<std::string> captions_;
  std::vector<int64_t> labels_;
  std::vector<uint32_t> checksums_;
  std::vector<float> cache_values_;
  Manifest manifest_;
};

// Writes one complete shard file at `path` (no temporary name handling). `cache_values`
// holds each sample's values of every cache of `caches`, sample after sample.
absl::Status WriteShardFile(const std::string& path, const SampleSpec& spec, int gzip,
                            const std::vector<uint8_t>& pixels,
                            const std::vector<std::string>& captions,
                            const std::vector<int64_t>* labels,
                            const std::vector<uint32_t>& checksums,
                            const std::vector<CacheSpec>& caches = {},
                            const std::vector<float>& cache_values = {});

}  // namespace loom::data

// `loom data encode`: a dataset whose samples carry what a frozen model computed (a
// VAE's latents, a text encoder's per-token features of the caption; later CLIP
// embeddings) beside their pixels, captions, labels and the caches the source already
// carries, in shard format 2, each cache with its model's kind, path and content hash in
// the manifest so a stage can refuse a cache made by another model. Samples keep their
// order and ids; the tokenizer beside the source shards is copied. With `flip`, the
// encoding of each horizontally flipped image is stored too ("<name>_flipped"), so
// training can flip without ever flipping latents.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::pipeline {

struct EncodeOptions {
  std::string data;  // source dataset directory
  std::string with;  // export whose stage offers a CacheProducer
  std::string out;   // new dataset directory
  bool flip = false;
  int64_t batch = 256;
};

struct EncodeReport {
  int64_t samples = 0;
  std::string hash;   // the producer's content hash
  double seconds = 0;
};

absl::StatusOr<EncodeReport> EncodeDataset(const EncodeOptions& options);

}  // namespace loom::pipeline

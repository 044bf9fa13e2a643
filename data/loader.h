// The distributed loader: this rank's slice of each global batch (sample_plan.h),
// read from shards by a pool of worker threads that prepare up to `prefetch` batches
// ahead, decoded to float tensors, in exactly the order the plan gives.
//
//   ASSIGN_OR_RETURN(auto loader, Loader::Create(options, state));
//   ASSIGN_OR_RETURN(Batch b, loader->Next());   // b.pixels: [B, C, H, W] in [-1, 1]
//   checkpoint.loader = loader->state();         // resumes right after b
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/manifest.h"
#include "data/sample_plan.h"
#include "data/tokenizer.h"

namespace loom::data {

struct LoaderOptions {
  std::string dir;           // dataset directory (manifest.json + shards)
  int64_t batch = 0;         // global samples per Next() (all ranks together)
  int rank = 0;
  int world = 1;
  int workers = 2;           // decode threads; 0 = read on the calling thread
  int prefetch = 4;          // batches prepared ahead
  int image_size = 0;        // 0 = as stored
  int channels = 0;          // 0 = as stored; else must match the data
  std::string fit = "resize";  // how stored sizes become image_size: resize | pad
  bool flip = false;         // random horizontal flips (per sample, seeded)
  std::shared_ptr<const Tokenizer> tokenizer;  // null: no token ids
  int max_tokens = 16;
  bool skip_bad = false;     // on_error: skip (replace and count) instead of fail
  int64_t max_skipped = 100;
  bool pixels = true;        // decode pixels into Batch::pixels (they are read and checked anyway)
  // Cache datasets to return in Batch::caches. With `flip`, a flipped sample returns
  // "<name>_flipped" under <name>: flips are encoded, never applied to latents.
  std::vector<std::string> caches;
};

struct Batch {
  torch::Tensor pixels;  // float [B, C, H, W] (images) or [B, T, C, H, W] (video), in [-1, 1]
  torch::Tensor tokens;  // int64 [B, L] (empty without a tokenizer)
  torch::Tensor mask;    // bool [B, L], true for real tokens
  torch::Tensor labels;  // int64 [B], -1 where the data has none
  torch::Tensor ids;     // int64 [B], global sample ids
  std::map<std::string, torch::Tensor> caches;  // float [B, ...] per requested cache
  std::vector<std::string> captions;
  LoaderState start;     // the state this batch was cut at
};

class Loader {
 public:
  static absl::StatusOr<std::unique_ptr<Loader>> Create(const LoaderOptions& options,
                                                        const LoaderState& state);
  ~Loader();

  // This rank's slice of the next global batch.
  absl::StatusOr<Batch> Next();

  // The state after the last batch Next() returned: save it, and a loader created from
  // it continues with exactly the next batch (at any world size).
  LoaderState state() const { return consumed_; }

  const Manifest& manifest() const { return manifest_; }
  const SamplePlan& plan() const { return plan_; }
  int64_t skipped() const;

 private:
  struct Impl;
  Loader(const LoaderOptions& options, Manifest manifest, const LoaderState& state);

  LoaderOptions options_;
  Manifest manifest_;
  SamplePlan plan_;
  LoaderState consumed_;
  LoaderState planned_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::data

// The order in which a run sees its samples (DESIGN.md contract): one seeded
// permutation of all samples per epoch; each optimizer step takes the next `global
// batch` samples of it, and rank r of W takes its slice of that batch. The state is
// (epoch, position, seed) and does not depend on the world size, so a run resumes
// with exactly the same samples at any world size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::data {

struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;  // samples of this epoch's permutation already consumed
  uint64_t seed = 0;

  bool operator==(const LoaderState& o) const {
    return epoch == o.epoch && position == o.position && seed == o.seed;
  }
  std::string ToJson() const;
  static absl::StatusOr<LoaderState> FromJson(const std::string& text);
};

class SamplePlan {
 public:
  // `batch`: samples per call of Next (the global batch, or a global micro-batch).
  SamplePlan(int64_t total, int64_t batch, uint64_t seed);

  int64_t total() const { return total_; }
  int64_t batch() const { return batch_; }
  // Full batches per epoch; the remainder of each epoch is dropped.
  int64_t batches_per_epoch() const { return total_ / batch_; }

  // The global sample ids of the batch that starts at `state` (normalized first).
  std::vector<int64_t> GlobalBatch(const LoaderState& state) const;
  // The state after that batch.
  LoaderState Advance(const LoaderState& state) const;
  // Moves a state that sits at an epoch's dropped tail to the next epoch's start.
  LoaderState Normalize(const LoaderState& state) const;

  // [begin, end) of rank `rank`'s slice of a batch of `batch` samples over `world` ranks.
  static std::pair<int64_t, int64_t> RankSlice(int64_t batch, int rank, int world);

  // The permutation of epoch `epoch` (Fisher-Yates over a counter-based generator).
  std::vector<int64_t> Permutation(int64_t epoch) const;

 private:
  const std::vector<int64_t>& CachedPermutation(int64_t epoch) const;

  int64_t total_;
  int64_t batch_;
  uint64_t seed_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_;
};

}  // namespace loom::data

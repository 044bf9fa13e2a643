// Moving AdamW state between LibTorch's optimizer (keyed by parameter) and whole
// per-parameter tensors, for checkpoints that any strategy and world size can load.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dist/process_group.h"

namespace loom::dist {

// The AdamW state of `param` (undefined tensors and step 0 before its first update).
struct AdamWSlot {
  int64_t step = 0;
  torch::Tensor exp_avg, exp_avg_sq;
};
AdamWSlot GetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param);
void SetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param, const AdamWSlot& slot);

// Looks up "<name>.exp_avg" / "<name>.exp_avg_sq" with the expected shape.
absl::Status FindState(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                       torch::IntArrayRef shape, torch::Tensor* exp_avg, torch::Tensor* exp_avg_sq);

// Sets the learning rate of every AdamW parameter group.
void SetLr(torch::optim::Optimizer& optimizer, double lr);

// Bytes of AdamW state the optimizer holds.
int64_t OptimizerBytes(const torch::optim::Optimizer& optimizer);

// The global norm of gradients sharded over `group` (each rank passes its shards'
// gradients); scales them in place to max_norm when it is exceeded and max_norm > 0.
absl::StatusOr<double> ClipShardedGradNorm(ProcessGroup& group, const std::vector<torch::Tensor>& grads,
                                           double max_norm);

// One parameter's place in a flat buffer that ranks shard in equal slices.
struct FlatEntry {
  std::string name;
  int64_t offset = 0;
  std::vector<int64_t> shape;
};

// Gathers the AdamW state of this rank's `shard` of a flat buffer of `padded` elements
// and splits it into whole per-parameter tensors ("<name>.exp_avg", "<name>.exp_avg_sq").
// Collective. Appends to `out` and sets `*step`; nothing before the first update.
absl::Status GatherShardState(ProcessGroup& group, torch::optim::Optimizer& optimizer,
                              const torch::Tensor& shard, int64_t padded,
                              const std::vector<FlatEntry>& entries,
                              std::vector<std::pair<std::string, torch::Tensor>>* out, int64_t* step);

// The inverse: re-cuts whole per-parameter state into this rank's shard.
absl::Status ScatterShardState(int rank, int world, torch::optim::Optimizer& optimizer,
                               const torch::Tensor& shard, int64_t padded,
                               const std::vector<FlatEntry>& entries,
                               const std::map<std::string, torch::Tensor>& tensors, int64_t step);

}  // namespace loom::dist

// Helpers the strategies share: AdamW state access (LibTorch keys it by parameter),
// learning rates, clipping over shards, and the slices of flat sharded buffers that
// checkpoints store and any strategy at any world size can re-cut.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dist/process_group.h"
#include "dist/strategy.h"

namespace loom::dist {

// The AdamW state of `param` (undefined tensors and step 0 before its first update).
struct AdamWSlot {
  int64_t step = 0;
  torch::Tensor exp_avg, exp_avg_sq;
};
AdamWSlot GetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param);
void SetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param, const AdamWSlot& slot);

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
  int64_t numel() const;
};

// The pieces of the parameters of `entries` inside elements [shard_begin, shard_begin +
// shard.numel()) of their flat buffer, as views of `shard`; `suffix` is appended to names.
std::vector<Slice> FlatShardSlices(const std::vector<FlatEntry>& entries, int64_t shard_begin,
                                   const torch::Tensor& shard, const std::string& suffix = "");

// Fills `shard` (this rank's elements of a flat buffer, from shard_begin) with the
// stored tensors "<name><suffix>" that overlap it; the padding stays zero.
absl::Status ReadFlatShard(const std::vector<FlatEntry>& entries, int64_t shard_begin, const RangeReader& read,
                           const std::string& suffix, torch::Tensor shard);

// All-gathers a flat buffer of `padded` elements from each rank's shard values and
// splits it into whole parameters (on rank 0 only; other ranks add nothing). Collective.
absl::Status GatherFlatOnRoot(ProcessGroup& group, const std::vector<FlatEntry>& entries, int64_t padded,
                              const torch::Tensor& shard, std::map<std::string, torch::Tensor>* out);

// Weight decay applied by hand before an AdamW step without decay, for parameter
// groups AdamW's flat shards cannot express: p *= 1 - lr * wd * mask.
class DecayMask {
 public:
  DecayMask() = default;
  // `decays[i]`: whether element i of `target` decays; no mask when all do.
  DecayMask(torch::Tensor target, torch::Tensor decays) : target_(target), mask_(decays) {}
  void Apply(double lr, double weight_decay) const;

 private:
  torch::Tensor target_, mask_;
};

}  // namespace loom::dist

// Distribution strategies, applied to a finished model from outside (the model has no
// trace of them): ddp replicates parameters and optimizer state and all-reduces
// gradients; zero1 shards the AdamW state (each rank updates 1/N of the flat parameters
// and the result is all-gathered); zero2 also reduce-scatters gradients so each rank
// keeps only its slice; zero3 also shards the parameters, gathering each unit's just
// before its forward and again before its backward and freeing them after (FSDP style;
// the units are the modules marked by core/unit.h, found by walking the module tree).
// All use LibTorch's AdamW and clip by the global gradient norm.
//
//   ASSIGN_OR_RETURN(auto strategy, ApplyStrategy(model, group, dist_options, adamw));
//   strategy->ZeroGrad();  loss.backward();  strategy->FinishBackward();
//   strategy->ClipGradNorm(1.0);  strategy->Step(lr);
//
// State leaves a strategy as slices: contiguous pieces of parameters that this rank
// holds or owns the AdamW state of. A checkpoint stores each rank's slices; any strategy
// at any world size re-cuts them on load by reading the element ranges it needs.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dist/options.h"
#include "dist/process_group.h"

namespace loom::dist {

struct MemoryStats {
  int64_t param_bytes = 0;      // parameters this rank holds
  int64_t grad_bytes = 0;       // gradients this rank holds (after FinishBackward)
  int64_t optimizer_bytes = 0;  // AdamW state this rank holds
};

struct AdamWSettings {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // Parameter names left out of weight decay (biases, norms, temperatures); null: none.
  std::function<bool(const std::string& name)> no_decay;
};

// Elements [begin, end) of a parameter flattened; `data` is a 1-D view of them, so
// writing to it sets the parameter (or the state it belongs to).
struct Slice {
  std::string name;            // the parameter's name in the model the strategy wraps
  std::vector<int64_t> shape;  // the whole parameter's shape
  int64_t begin = 0;
  int64_t end = 0;
  torch::Tensor data;
};

// Elements [begin, end) of the flattened tensor `key` of a stored state, 1-D.
using RangeReader =
    std::function<absl::StatusOr<torch::Tensor>(const std::string& key, int64_t begin, int64_t end)>;

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;

  // Zeroes gradients before the first micro-batch of a step.
  virtual void ZeroGrad() = 0;
  // false for micro-batches whose gradients only accumulate locally (no_sync).
  virtual void SetSync(bool sync) = 0;
  // After the last micro-batch's backward: gradients are reduced across ranks.
  virtual absl::Status FinishBackward() = 0;
  // The global gradient norm (over all ranks' shards); clips to max_norm when > 0.
  virtual absl::StatusOr<double> ClipGradNorm(double max_norm) = 0;
  // The optimizer step at learning rate `lr`; ZeRO all-gathers the updated parameters.
  virtual absl::Status Step(double lr) = 0;

  // Makes every parameter whole on every rank (zero3 gathers them; they stay until the
  // next ZeroGrad), for code that reads the module directly. A no-op for the others.
  virtual absl::Status GatherFullParameters() { return absl::OkStatus(); }

  virtual MemoryStats Memory() const = 0;

  // The parameters this rank holds: every parameter whole for ddp, zero1 and zero2
  // (replicated: the same on every rank), this rank's shard pieces for zero3. Views:
  // writing to them sets the parameters (between steps).
  virtual std::vector<Slice> ParameterSlices() = 0;
  virtual bool parameters_replicated() const = 0;

  // The AdamW state this rank owns, as pieces "<param>.exp_avg" and "<param>.exp_avg_sq"
  // (every parameter's for ddp, replicated; this rank's shards for zero1/2/3), and
  // AdamW's step count. Empty before the first step.
  struct OptimizerSlices {
    int64_t step = 0;
    bool replicated = false;
    std::vector<Slice> slices;  // names carry the suffix
  };
  virtual OptimizerSlices OptimizerState() = 0;
  // Sets the AdamW state this rank owns from a stored state (any strategy, any world).
  virtual absl::Status LoadOptimizerState(const RangeReader& read, int64_t step) = 0;

  // Whole tensors, by parameter name, on rank 0 of per-rank values laid out as
  // ParameterSlices() (the parameters, or a moving average of them). Collective; the
  // other ranks get an empty map.
  virtual absl::StatusOr<std::map<std::string, torch::Tensor>> GatherOnRoot(
      const std::vector<torch::Tensor>& values) = 0;
};

// Broadcasts parameters from rank 0 after checking that every rank has the same
// parameter names and shapes, then applies options.strategy.
absl::StatusOr<std::unique_ptr<Strategy>> ApplyStrategy(std::shared_ptr<torch::nn::Module> model,
                                                        ProcessGroup& group,
                                                        const DistOptions& options,
                                                        const AdamWSettings& adamw);

// The check and broadcast alone (also used before evaluation-only runs).
absl::Status SyncParameters(torch::nn::Module& model, ProcessGroup& group);

}  // namespace loom::dist

// Distribution strategies, applied to a finished model from outside (the model has no
// trace of them): ddp replicates parameters and optimizer state and all-reduces
// gradients; zero1 shards the AdamW state (each rank updates 1/N of the flat parameters
// and the result is all-gathered); zero2 also reduce-scatters gradients so each rank
// keeps only its slice; zero3 also shards the parameters, gathering each block's just
// before its forward and again before its backward and freeing them after (FSDP style;
// the model exposes its blocks through core/block_host.h). All use LibTorch's AdamW and
// clip by the global gradient norm.
//
//   ASSIGN_OR_RETURN(auto strategy, ApplyStrategy(model, group, dist_options, adamw));
//   strategy->ZeroGrad();  loss.backward();  strategy->FinishBackward();
//   strategy->ClipGradNorm(1.0);  strategy->Step();
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

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
};

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
  // next ZeroGrad), e.g. to sample or save after a step. A no-op for the others.
  virtual absl::Status GatherFullParameters() { return absl::OkStatus(); }

  virtual MemoryStats Memory() const = 0;

  // AdamW state as whole per-parameter tensors, "<param>.exp_avg" and
  // "<param>.exp_avg_sq", plus AdamW's step count: the same on every rank and loadable by
  // any strategy at any world size (shards are gathered here and re-cut on import).
  // Collective: every rank calls it. Empty before the first step.
  struct OptimizerState {
    int64_t step = 0;
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
  };
  virtual absl::StatusOr<OptimizerState> ExportOptimizer() = 0;
  virtual absl::Status ImportOptimizer(const std::map<std::string, torch::Tensor>& tensors,
                                       int64_t step) = 0;
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

// A stage's trainables as the loop runs them: each with its distribution strategy (the
// configured one, applied from outside), its AdamW schedule position and its moving
// average; their state as checkpoint slices and back; whole weights on rank 0 for
// previews and the final export.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "dist/options.h"
#include "dist/process_group.h"
#include "dist/strategy.h"
#include "stages/stage.h"
#include "train/checkpoint.h"
#include "train/ema.h"
#include "train/slice_store.h"

namespace loom::train {

struct TrainableRun {
  stages::Trainable spec;
  std::string prefix;  // the module's place in the stage: "" or "disc."
  std::unique_ptr<dist::Strategy> strategy;
  std::unique_ptr<Ema> ema;  // null without a moving average
  std::vector<torch::Tensor> params;
  int64_t steps = 0;         // optimizer steps taken

  // Its LR at global step `step` of a run of `total` steps: the schedule counts only
  // the steps at which it trains (start, start + every, ...).
  double LearningRate(int64_t step, int64_t total) const;
};

// Wraps each trainable of `stage` (already on its device) in the configured strategy;
// collective.
absl::StatusOr<std::vector<TrainableRun>> StartTrainables(stages::Stage& stage, dist::ProcessGroup& group,
                                                          const dist::DistOptions& options);

// Makes only trainable `active`'s parameters require gradients (while the stage
// computes its loss), or, with active < 0, all of them again.
void FreezeAllBut(std::vector<TrainableRun>& runs, int active);

// This rank's share of every trainable's parameters, averages and AdamW state, and
// (rank 0) the stage's buffers, as checkpoint slices; and their records.
std::vector<StoredSlice> CheckpointSlices(stages::Stage& stage, std::vector<TrainableRun>& runs, int rank);
std::vector<TrainableRecord> Records(std::vector<TrainableRun>& runs);

// Sets parameters, averages, AdamW state and buffers from a checkpoint: each rank reads
// the ranges it holds. InvalidArgument when the checkpoint holds another model;
// DataLoss when it is damaged.
absl::Status LoadTrainables(stages::Stage& stage, std::vector<TrainableRun>& runs, const OpenedCheckpoint& ck);

// Whole weights on rank 0 (the moving averages where kept and `ema`, else the raw
// parameters) with the stage's buffers, by stage name; collective, empty elsewhere.
absl::StatusOr<std::map<std::string, torch::Tensor>> GatherWeights(stages::Stage& stage,
                                                                   std::vector<TrainableRun>& runs, bool ema);

// Copies named weights into a module (every parameter required, buffers when present),
// refusing missing, extra or misshapen tensors; `source` names where they came from.
absl::Status LoadWeights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& weights,
                         const std::string& source);

}  // namespace loom::train

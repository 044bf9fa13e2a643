// Checkpoints: run_dir/checkpoints/step-NNNNNNN/ with model.safetensors (raw weights),
// ema.safetensors, optimizer.safetensors (whole per-parameter AdamW state, so any
// strategy and world size can resume), tokenizer.model, config.yaml and state.json
// (step, loader state, world size, strategy), written last. The directory is built
// under a temporary name and renamed when complete, so a crash at any moment leaves
// the previous checkpoint loadable and the partial one ignored.
#pragma once

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "data/sample_plan.h"
#include "core/safetensors.h"

namespace loom::train {

struct CheckpointContents {
  int64_t step = 0;
  data::LoaderState loader;
  int world = 1;
  std::string strategy;
  int64_t adam_step = 0;
  std::vector<NamedTensor> model, ema, optimizer;
  std::string config_yaml;
  std::string tokenizer;  // the tokenizer model's bytes
};

// Writes a checkpoint and keeps only the newest `keep`.
absl::Status SaveCheckpoint(const std::string& run_dir, const CheckpointContents& contents, int keep);

struct LoadedCheckpoint {
  std::string dir;
  int64_t step = 0;
  data::LoaderState loader;
  int world = 1;
  std::string strategy;
  int64_t adam_step = 0;
  std::map<std::string, torch::Tensor> model, ema, optimizer;
};

// The directory of the newest complete checkpoint of a run, if any.
std::optional<std::string> LatestCheckpointDir(const std::string& run_dir);

// The newest complete checkpoint of a run, or nullopt when it has none.
absl::StatusOr<std::optional<LoadedCheckpoint>> LoadLatestCheckpoint(const std::string& run_dir);

// One checkpoint directory (runs/NAME/checkpoints/step-NNNNNNN); without the optimizer
// state (twice the model's size) when only the weights are wanted.
absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& dir, bool with_optimizer = true);

}  // namespace loom::train

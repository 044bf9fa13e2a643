// `loom train`: runs an experiment alone or under mpirun/srun. The loop knows no model
// kind: it makes the configured stage (stages/registry.h) with its frozen dependencies,
// wraps each of its trainables in the configured strategy, and steps them. Outputs go to
// run.dir/run.name/: config.yaml, log.txt, metrics.jsonl, samples/step-NNNNNNN.png (the
// stage's preview), checkpoints/step-NNNNNNN/ and model.safetensors (the final weights,
// moving averages where kept). A run directory with checkpoints resumes from the newest
// intact one (at any world size or strategy).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "train/experiment.h"

namespace loom::train {

// Trains the stage of `options`; `resolved_yaml` is saved in the run.
absl::Status Train(const ExperimentOptions& options, const std::string& resolved_yaml);

}  // namespace loom::train

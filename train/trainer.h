// `loom train`: runs an experiment alone or under mpirun/srun. Outputs go to
// run.dir/run.name/: config.yaml, log.txt, metrics.jsonl, samples/step-NNNNNNN.png and
// model.safetensors (EMA weights at the end), checkpoints/step-NNNNNNN/. A run directory
// with checkpoints resumes from the newest complete one (at any world size or strategy).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "train/options.h"

namespace loom::train {

// Trains the text-to-image DiT stage of `options`; `resolved_yaml` is saved in the run.
absl::Status Train(const ExperimentOptions& options, const std::string& resolved_yaml);

}  // namespace loom::train

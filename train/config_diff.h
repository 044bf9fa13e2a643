// What changed between the config a run was started with and the one it is resumed
// with. Keys that only steer the loop (steps, logging, checkpoints, evaluation), the
// optimizer's settings (lowering lr after a divergence), the distribution and the
// loader's threads may change; any other change would resume into another experiment.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::train {

struct ConfigChange {
  std::string key;  // dotted: "stage.diffusion.prediction"
  std::string before, after;
};

// Every leaf of the two YAML texts whose value differs (added and removed keys too).
absl::StatusOr<std::vector<ConfigChange>> DiffConfigs(const std::string& before_yaml, const std::string& after_yaml);

// Whether `key` may change on resume.
bool MayChangeOnResume(const std::string& key);

}  // namespace loom::train

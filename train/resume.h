// Resuming a run, collectively: the ranks agree on the checkpoint (they must share the
// run directory), the config may change only where that keeps the experiment (see
// config_diff.h), frozen dependencies must be the exports the run started with, and a
// damaged checkpoint is named and passed over for the newest intact one.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "dist/process_group.h"
#include "stages/stage.h"
#include "train/checkpoint.h"
#include "train/trainables.h"

namespace loom::train {

// The newest checkpoint step every rank sees under run_dir, or -1 when there is none;
// an error when ranks see different ones.
absl::StatusOr<int64_t> AgreedNewestCheckpoint(dist::ProcessGroup& group, const std::string& run_dir);

// Loads the newest intact checkpoint of run_dir into the stage's trainables and returns
// its state; nullopt when the run has none.
absl::StatusOr<std::optional<CheckpointState>> Resume(dist::ProcessGroup& group, const std::string& run_dir,
                                                      stages::Stage& stage, std::vector<TrainableRun>& runs,
                                                      const std::string& resolved_yaml,
                                                      const nlohmann::json& dependencies);

}  // namespace loom::train

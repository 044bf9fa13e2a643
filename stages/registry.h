// The stage kinds: the one explicit list that names them (registry.cpp). Each kind has
// its options (the keys of `stage:` when `stage.kind` names it), the frozen exports its
// options depend on, and a maker. Everything else in loom reaches stages through this
// list and the Stage interface.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "core/config/tagged.h"
#include "data/options.h"
#include "stages/stage.h"
#include "train/optim.h"
#include "train/options.h"

namespace loom::stages {

// A frozen export that a stage's options name ("stage.vae: exports/vae").
struct Dependency {
  std::string name;  // the option that names it: "vae"
  std::string path;  // the export, run or pipeline it names
  // The stage kind it must be; empty: any kind that offers what the maker asks of it
  // (a text encoder: any export that encodes text).
  std::string kind;
};

// What a maker gets.
struct StageInputs {
  const config::Tagged* options = nullptr;  // stage.kind and its options
  data::DataOptions data;
  train::OptimOptions optim;  // the main trainable's
  train::TrainOptions train;
  // Frozen dependencies by name, loaded, in eval mode, on the training device.
  std::map<std::string, std::shared_ptr<Stage>> dependencies;
  // Files saved with the stage (Stage::Assets()) when it comes from a checkpoint or an
  // export; empty when it starts fresh from the data.
  std::map<std::string, std::string> assets;
};

struct StageKind {
  config::KindInfo options;
  std::function<std::vector<Dependency>(const config::Tagged& options)> dependencies;
  std::function<absl::StatusOr<std::shared_ptr<Stage>>(const StageInputs& inputs)> make;
};

// Every kind, in the order `loom train --keys` lists them.
const std::vector<StageKind>& StageKinds();
// Their options, for the config schema of `stage:`.
std::vector<config::KindInfo> StageKindOptions();
// The kind named `name`, or an error naming the kinds.
absl::StatusOr<const StageKind*> FindStageKind(const std::string& name);

// Makes the stage of `inputs.options` (its kind's maker); checks that every dependency
// its options name was given, of the kind it must be.
absl::StatusOr<std::shared_ptr<Stage>> MakeStage(const StageInputs& inputs);

}  // namespace loom::stages

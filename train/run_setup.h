// Everything a run checks and builds before it writes anything: its frozen dependencies
// (exports, loaded and recorded with their content hashes), its stage, and the data the
// stage needs (fields present, caches made by the very dependency the stage uses).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "pipeline/model.h"
#include "stages/registry.h"
#include "train/experiment.h"

namespace loom::train {

struct RunSetup {
  std::map<std::string, std::shared_ptr<pipeline::LoadedModel>> dependencies;
  nlohmann::json dependency_records = nlohmann::json::object();  // name -> {path, resolved, hash, kind}
  stages::StageInputs inputs;  // to make copies of the stage (previews, final weights)
  std::shared_ptr<stages::Stage> stage;
  stages::DataNeeds needs;
  data::Manifest manifest;
};

// Loads the dependencies onto `device` (refusing ones that changed since the run's
// newest checkpoint recorded them), makes the stage (seeded by run.seed) and checks
// data.train against what it needs.
absl::StatusOr<RunSetup> SetUpRun(const ExperimentOptions& o, const torch::Device& device);

// The loader options of data.train for this rank.
data::LoaderOptions TrainLoaderOptions(const ExperimentOptions& o, const RunSetup& setup, int rank, int world,
                                       int64_t micro_batch);

// A fixed preview batch (the first samples of data.test when it holds what the stage
// needs, else of data.train), with the label names and the run's data options.
absl::StatusOr<stages::PreviewData> LoadPreviewData(const ExperimentOptions& o, const RunSetup& setup);

// A fresh copy of the stage holding `weights` (names as the stage's), in eval mode on
// `device`, for previews and evaluations; the global generator is left as it was.
absl::StatusOr<std::shared_ptr<stages::Stage>> CopyStage(const RunSetup& setup,
                                                         const std::map<std::string, torch::Tensor>& weights,
                                                         const torch::Device& device);

}  // namespace loom::train

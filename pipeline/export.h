// Writing exports (format in model.h): a model with no frozen dependencies becomes one
// export directory; a model with dependencies becomes a pipeline whose parts are its
// dependencies' exports (copied) and its own, so the directory is self-contained and
// can be moved. The directory appears atomically: it is built beside its place and
// swapped in, so a crash leaves the earlier export whole.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "core/status.h"
#include "pipeline/model.h"
#include "stages/cascade.h"

namespace loom::pipeline {

struct ExportOptions {
  std::string dtype = "fp32";  // fp32, bf16 or fp16 (floating tensors are cast)
  nlohmann::json calibration = nlohmann::json::object();  // Stage::Calibrate's figures
};

absl::Status WriteExport(const LoadedModel& model, const std::string& out_dir, const ExportOptions& options);

// A cascade export (stages/cascade.h): config.json (kind "cascade") names the stages in
// order with their sampling settings and hashes; each stage is an export in its own
// subdirectory, and their frozen dependencies (one text encoder for all) are shared
// parts beside them. Refuses stages that were trained under different frozen text
// encoders, or that do not follow on (sides, channels).
struct CascadePart {
  std::string name;            // its subdirectory: "base", "sr1", ...
  const LoadedModel* model;    // loaded with LoadModel
  stages::CascadeSampling sampling;
};
// What a cascade's hash covers of a stage's sampling settings.
std::string CascadeSamplingKey(const stages::CascadeSampling& sampling);
absl::Status WriteCascade(const std::vector<CascadePart>& stages, const std::string& out_dir,
                          const ExportOptions& options);

// The content hash of an export's files (model.safetensors, config.yaml, assets in
// order) and its calibration.
absl::StatusOr<std::string> ExportHash(const std::string& dir, const std::vector<std::string>& assets,
                                       const nlohmann::json& calibration);

}  // namespace loom::pipeline

// Trained models for inference, from wherever they are: a run directory (its newest
// checkpoint), a checkpoint directory, an export, or a pipeline export. A model is its
// stage (the kind's own code, from stages/registry.h) with its weights, in eval mode on
// the CPU, and its frozen dependencies loaded the same way. An export is a directory:
//   config.json        format, version, kind, step, weights, dtype, content hash, the
//                      architecture (Stage::Describe), calibration, dependencies
//   model.safetensors  every parameter and buffer of the stage by name
//   config.yaml        the resolved experiment config, for loom
//   assets             the stage's files (tokenizer.model, ...)
// A pipeline export chains parts: config.json names them (kind "pipeline", "parts",
// "output"), each part an export in its own subdirectory whose dependencies point to
// its sibling parts. Loading a pipeline gives its output part, dependencies attached.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "stages/stage.h"
#include "train/experiment.h"

namespace loom::pipeline {

inline constexpr char kExportFormat[] = "loom-export";
inline constexpr int kExportVersion = 2;

struct LoadedModel {
  std::shared_ptr<stages::Stage> stage;  // eval mode, CPU, weights loaded
  train::ExperimentOptions options;      // the experiment that trained it
  std::string kind;                      // its stage kind
  std::string source;                    // the directory it came from
  bool from_export = false;              // an export or pipeline (not a run or checkpoint)
  int64_t step = 0;
  std::string weights = "ema";           // "ema" or "raw"
  std::string hash;                      // an export's content hash; empty otherwise
  // Frozen dependencies by name: {path, resolved, hash, kind}, and loaded.
  nlohmann::json dependencies = nlohmann::json::object();
  std::map<std::string, std::shared_ptr<LoadedModel>> parts;
};

// Loads the model at `path` (run, checkpoint, export or pipeline). `weights`: "ema" (the
// moving average, or the raw weights of a run that kept none) or "raw".
absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const std::string& weights = "ema");

// An export or pipeline only (frozen dependencies must be exports); its content hash is
// checked against its files.
absl::StatusOr<LoadedModel> LoadExport(const std::string& path);

// Moves a loaded model (and its dependencies) to `device`, frozen (no gradients).
void Freeze(LoadedModel& model, const torch::Device& device);

// The dependency record a run or export keeps of a loaded export.
nlohmann::json DependencyRecord(const std::string& path, const LoadedModel& model);

// Every parameter and buffer of a stage by name, as float32 CPU copies.
std::map<std::string, torch::Tensor> StageTensors(stages::Stage& stage);

}  // namespace loom::pipeline

// The sampling flags of the commands that generate (`loom sample`, `loom eval prompts`):
// --steps and --cfg take one value, or for a cascade one per stage (comma-separated),
// and --aug the augmentation level of a cascade's super-resolution inputs. Unset, a
// model samples with 50 steps and guidance 4, a cascade with the settings it was
// exported with.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/args.h"
#include "pipeline/model.h"
#include "stages/capabilities.h"

namespace loom::cli {

// "50,25,25" as numbers; empty text gives none. The error names the command and flag.
absl::StatusOr<std::vector<double>> ParseNumbers(const std::string& command, const std::string& flag,
                                                 const std::string& text);

struct SamplingFlags {
  std::string steps, cfg, aug;

  void Add(ArgParser& args);
  // Fills `options` for `model`; an error for lists a model cannot take.
  absl::Status Apply(const std::string& command, const pipeline::LoadedModel& model,
                     stages::GenerateOptions* options) const;
};

// The settings `options` give `model`, for a command's JSON line: {"steps", "cfg"} as
// numbers, or for a cascade as lists, one per stage, with "aug" beside them.
absl::StatusOr<nlohmann::ordered_json> DescribeSampling(const pipeline::LoadedModel& model,
                                                        const stages::GenerateOptions& options);

}  // namespace loom::cli

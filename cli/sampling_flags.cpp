// Sampling flags (see sampling_flags.h).
#include "cli/sampling_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "stages/cascade.h"

namespace loom::cli {
absl::StatusOr<std::vector<double>> ParseNumbers(const std::string& command, const std::string& flag,
                                            const std::string& text) {
  std::vector<double> out;
  if (text.empty()) return out;
  for (const absl::string_view piece : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(piece, &v)) {
      return absl::InvalidArgumentError(command + ": --" + flag + " '" + text +
                                        "' is not a number or a comma-separated list of numbers");
    }
    out.push_back(v);
  }
  return out;
}

void SamplingFlags::Add(ArgParser& args) {
  args.Flag("steps", &steps, "sampling steps (default 50); a cascade: one for all stages or one per stage, e.g. 50,25,25");
  args.Flag("cfg", &cfg, "classifier-free guidance scale, 1 = none (default 4); a cascade: one or one per stage");
  args.Flag("aug", &aug, "a cascade: noise-augmentation level in [0, 1] of each super-resolution stage's input "
                         "(one or one per stage; the base's is unused); default: as exported");
}

absl::Status SamplingFlags::Apply(const std::string& command, const pipeline::LoadedModel& model,
                                  stages::GenerateOptions* o) const {
  ASSIGN_OR_RETURN(const std::vector<double> step_values, ParseNumbers(command, "steps", steps));
  ASSIGN_OR_RETURN(const std::vector<double> cfg_values, ParseNumbers(command, "cfg", cfg));
  ASSIGN_OR_RETURN(const std::vector<double> aug_values, ParseNumbers(command, "aug", aug));
  for (const double s : step_values) {
    if (s < 1 || s != static_cast<double>(static_cast<int>(s))) {
      return absl::InvalidArgumentError(command + ": --steps must be whole numbers >= 1");
    }
  }
  for (const double c : cfg_values) {
    if (c < 0) return absl::InvalidArgumentError(command + ": --cfg must be >= 0");
  }
  for (const double a : aug_values) {
    if (a < 0 || a > 1) return absl::InvalidArgumentError(command + ": --aug must be in [0, 1]");
  }
  const auto* cascade = dynamic_cast<const stages::CascadeStage*>(model.stage.get());
  if (cascade == nullptr) {
    if (step_values.size() > 1 || cfg_values.size() > 1 || !aug_values.empty()) {
      return absl::InvalidArgumentError(command + ": " + model.source + " is one stage: --steps and --cfg take one "
                                        "value, and --aug is for cascades");
    }
    if (!step_values.empty()) o->steps = static_cast<int>(step_values[0]);
    if (!cfg_values.empty()) o->cfg = cfg_values[0];
    return absl::OkStatus();
  }
  for (const double s : step_values) o->stage_steps.push_back(static_cast<int>(s));
  o->stage_cfg = cfg_values;
  o->stage_aug = aug_values;
  absl::Status ok = cascade->Resolve(*o).status();
  if (!ok.ok()) return absl::InvalidArgumentError(command + ": " + std::string(ok.message()));
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::ordered_json> DescribeSampling(const pipeline::LoadedModel& model,
                                                        const stages::GenerateOptions& options) {
  const auto* cascade = dynamic_cast<const stages::CascadeStage*>(model.stage.get());
  if (cascade == nullptr) return nlohmann::ordered_json{{"steps", options.steps}, {"cfg", options.cfg}};
  ASSIGN_OR_RETURN(const std::vector<stages::CascadeSampling> per_stage, cascade->Resolve(options));
  nlohmann::ordered_json steps = nlohmann::ordered_json::array(), cfg = steps, aug = steps;
  for (const stages::CascadeSampling& s : per_stage) {
    steps.push_back(s.steps);
    cfg.push_back(s.cfg);
    aug.push_back(s.aug_level);
  }
  return nlohmann::ordered_json{{"steps", steps}, {"cfg", cfg}, {"aug", aug}};
}

}  // namespace loom::cli

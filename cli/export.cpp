// `loom export`: a run, checkpoint or export as a self-contained directory for inference
// (model.safetensors, config.json, config.yaml, assets; a pipeline when the model has
// frozen dependencies; see pipeline/model.h). A stage that measures figures on its
// training data (a VAE's latent scale) does so here, with the weights exported.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "dist/placement.h"
#include "dist/runtime.h"
#include "pipeline/export.h"
#include "pipeline/model.h"
#include "stages/cascade.h"
#include "cli/sampling_flags.h"

namespace loom::cli {
namespace {

// The stage's calibration on `data_dir` (its training data unless given).
absl::StatusOr<nlohmann::json> Calibrate(pipeline::LoadedModel& model, std::string data_dir) {
  const int64_t samples = model.stage->calibration_samples();
  if (samples <= 0 || model.from_export) return nlohmann::json(model.stage->calibration());
  const data::DataOptions& d = model.options.data;
  if (data_dir.empty()) data_dir = d.train;
  absl::StatusOr<data::Manifest> manifest = data::ReadManifest(data_dir);
  if (!manifest.ok()) {
    return absl::Status(manifest.status().code(),
                        std::string(manifest.status().message()) + " (the " + model.kind +
                            " stage measures its calibration on its training data; pass --data DIR)");
  }
  data::LoaderOptions lo;
  lo.dir = data_dir;
  lo.batch = std::min<int64_t>({256, samples, manifest->total});
  lo.workers = 1;
  lo.image_size = d.image_size;
  lo.channels = d.channels;
  lo.fit = d.fit;
  ASSIGN_OR_RETURN(auto loader, data::Loader::Create(lo, {0, 0, static_cast<uint64_t>(model.options.run.seed)}));
  const int64_t batches = std::max<int64_t>(1, std::min(samples, manifest->total) / lo.batch);
  ASSIGN_OR_RETURN(nlohmann::ordered_json c, model.stage->Calibrate(*loader, batches));
  RETURN_IF_ERROR(model.stage->SetCalibration(c));
  log::Info() << "calibrated on " << batches * lo.batch << " samples of " << data_dir << ": " << c.dump();
  return nlohmann::json(c);
}

absl::Status RunExport(const std::string& name, const std::vector<std::string>& argv) {
  std::string source, out, weights = "ema", dtype = "fp32", data_dir;
  ArgParser args(name, "Writes a run's (or one checkpoint's) weights as an export: model.safetensors,\n"
                       "config.json (kind, architecture, calibration, content hash), config.yaml and\n"
                       "the stage's files; a pipeline (its frozen dependencies as parts) when it has any.");
  args.Positional("RUN_OR_CHECKPOINT", &source, "runs/NAME, runs/NAME/checkpoints/step-N or an export").Required();
  args.Flag("out", &out, "directory to write (new, empty, or an earlier export, replaced atomically)").Required();
  args.Flag("weights", &weights, "ema (the moving average) or raw (the optimizer's)");
  args.Flag("dtype", &dtype, "fp32, bf16 or fp16");
  args.Flag("data", &data_dir, "data to calibrate on, for stages that do (default: the run's data.train)");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  if (dtype != "fp32" && dtype != "bf16" && dtype != "fp16") {
    return absl::InvalidArgumentError(name + ": --dtype must be fp32, bf16 or fp16, not '" + dtype + "'");
  }
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(source, weights));
  if (model.weights != weights) log::Warning() << model.source << " kept no moving average; exporting its raw weights";
  pipeline::ExportOptions o;
  o.dtype = dtype;
  ASSIGN_OR_RETURN(o.calibration, Calibrate(model, data_dir));
  RETURN_IF_ERROR(pipeline::WriteExport(model, out, o));
  ASSIGN_OR_RETURN(pipeline::LoadedModel written, pipeline::LoadExport(out));  // what a user will load
  int64_t numel = 0;
  for (const auto& p : model.stage->parameters()) numel += p.numel();
  log::Info() << "exported " << model.source << " (" << model.kind << ", step " << model.step << ", " << model.weights
              << " weights) to " << out << (written.parts.empty() ? "" : " as a pipeline");
  log::Info() << nlohmann::json({{"out", out}, {"source", model.source}, {"kind", model.kind}, {"step", model.step},
                                 {"weights", model.weights}, {"dtype", dtype}, {"hash", written.hash},
                                 {"parameters", numel}, {"pipeline", !written.parts.empty()}})
                     .dump();
  return absl::OkStatus();
}

absl::Status RunCascadeExport(const std::string& name, const std::vector<std::string>& argv) {
  std::vector<std::string> stage_dirs;
  std::string out, steps, cfg, aug, dtype = "fp32";
  ArgParser args(name, "Chains a base stage and super-resolution stages (each a run or export of an ldm stage,\n"
                       "the later ones with stage.low_res) into one cascade export that 'loom sample' and\n"
                       "'loom eval prompts' run from a prompt. Each stage's input side must be the side the\n"
                       "one before makes; all must share one text encoder. Last line: JSON.");
  args.Flag("stage", &stage_dirs, "a stage (run, checkpoint or export), repeatable, base first").Required();
  args.Flag("out", &out, "directory to write (new, empty, or an earlier export, replaced atomically)").Required();
  args.Flag("steps", &steps, "default sampling steps per stage, comma-separated (one value: all stages)");
  args.Flag("cfg", &cfg, "default guidance scale per stage (one value: all stages)");
  args.Flag("aug", &aug, "default noise-augmentation level in [0, 1] of each stage's input (the base's unused); "
                         "empty: each stage's stage.aug_level");
  args.Flag("dtype", &dtype, "fp32, bf16 or fp16");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  if (stage_dirs.size() < 2) {
    return absl::InvalidArgumentError(name + ": a cascade needs a base stage and at least one super-resolution stage "
                                      "(--stage BASE --stage SR ...)");
  }
  std::vector<pipeline::LoadedModel> models;
  for (const std::string& dir : stage_dirs) {
    ASSIGN_OR_RETURN(pipeline::LoadedModel m, pipeline::LoadModel(dir, "ema"));
    models.push_back(std::move(m));
  }
  std::vector<stages::CascadeSampling> sampling(models.size());
  stages::GenerateOptions given;
  ASSIGN_OR_RETURN(const std::vector<double> step_values, ParseNumbers(name, "steps", steps));
  ASSIGN_OR_RETURN(given.stage_cfg, ParseNumbers(name, "cfg", cfg));
  ASSIGN_OR_RETURN(given.stage_aug, ParseNumbers(name, "aug", aug));
  for (const double s : step_values) given.stage_steps.push_back(static_cast<int>(s));
  for (size_t i = 0; i < models.size(); ++i) {
    sampling[i].steps = i == 0 ? 50 : 25;
    sampling[i].cfg = i == 0 ? 4.0 : 1.0;
  }
  std::vector<std::shared_ptr<stages::Stage>> chain;
  for (const auto& m : models) chain.push_back(m.stage);
  ASSIGN_OR_RETURN(auto defaults, stages::CascadeStage::Make(chain, stage_dirs, sampling));
  absl::StatusOr<std::vector<stages::CascadeSampling>> resolved = defaults->Resolve(given);
  if (!resolved.ok()) return absl::InvalidArgumentError(name + ": " + std::string(resolved.status().message()));
  std::vector<pipeline::CascadePart> parts;
  for (size_t i = 0; i < models.size(); ++i) {
    parts.push_back({i == 0 ? std::string("base") : "sr" + std::to_string(i), &models[i], (*resolved)[i]});
  }
  pipeline::ExportOptions o;
  o.dtype = dtype;
  RETURN_IF_ERROR(pipeline::WriteCascade(parts, out, o));
  ASSIGN_OR_RETURN(pipeline::LoadedModel written, pipeline::LoadExport(out));  // what a user will load
  const stages::ImageSpec spec = written.stage->AsTextToImage()->image_spec();
  log::Info() << "wrote the cascade of " << models.size() << " stages to " << out << ": " << spec.size << "x"
              << spec.size << " images";
  nlohmann::json stages = nlohmann::json::array();
  for (size_t i = 0; i < parts.size(); ++i) {
    stages.push_back({{"name", parts[i].name}, {"source", stage_dirs[i]}, {"steps", (*resolved)[i].steps},
                      {"cfg", (*resolved)[i].cfg}, {"aug_level", (*resolved)[i].aug_level}});
  }
  log::Info() << nlohmann::json({{"out", out}, {"kind", "cascade"}, {"hash", written.hash}, {"image_size", spec.size},
                                 {"stages", stages}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

Command CascadeExportCommand() {
  return {"export cascade", "chain a base stage and super-resolution stages into one cascade export",
          RunCascadeExport};
}

Command ExportCommand() {
  return {"export", "write a run as an export (model.safetensors + config.json) or a pipeline", RunExport};
}

}  // namespace loom::cli

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

}  // namespace

Command ExportCommand() {
  return {"export", "write a run as an export (model.safetensors + config.json) or a pipeline", RunExport};
}

}  // namespace loom::cli

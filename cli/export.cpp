// `loom export`: a run or checkpoint as a self-contained model directory for inference
// (model.safetensors, config.json, config.yaml, tokenizer.model; see train/export.h).
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "train/export.h"

namespace loom::cli {
namespace {

absl::Status RunExport(const std::string& name, const std::vector<std::string>& argv) {
  std::string source, out, weights = "ema", dtype = "fp32";
  ArgParser args(name, "Writes a run's (or one checkpoint's) weights as an export: model.safetensors,\n"
                       "config.json (architecture, diffusion), config.yaml and tokenizer.model.");
  args.Positional("RUN_OR_CHECKPOINT", &source, "runs/NAME or runs/NAME/checkpoints/step-N").Required();
  args.Flag("out", &out, "directory to write (new, empty, or an earlier export)").Required();
  args.Flag("weights", &weights, "ema (the averaged weights) or raw (the optimizer's)");
  args.Flag("dtype", &dtype, "fp32, bf16 or fp16");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  if (dtype != "fp32" && dtype != "bf16" && dtype != "fp16") {
    return absl::InvalidArgumentError(name + ": --dtype must be fp32, bf16 or fp16, not '" + dtype + "'");
  }
  ASSIGN_OR_RETURN(train::ModelBundle bundle, train::LoadModel(source, weights));
  if (bundle.weights != weights) {
    log::Warning() << bundle.source << " kept no EMA; exporting its raw weights";
  }
  RETURN_IF_ERROR(train::BuildStage(bundle).status());  // refuse weights that do not fit their config
  RETURN_IF_ERROR(train::WriteExport(bundle, out, dtype));
  int64_t numel = 0;
  for (const auto& [key, t] : bundle.tensors) numel += t.numel();
  log::Info() << "exported " << bundle.source << " (step " << bundle.step << ", " << bundle.weights << " weights) to "
              << out;
  log::Info() << nlohmann::json({{"out", out}, {"source", bundle.source}, {"step", bundle.step},
                                 {"weights", bundle.weights}, {"dtype", dtype}, {"tensors", bundle.tensors.size()},
                                 {"elements", numel}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

Command ExportCommand() {
  return {"export", "write a run as model.safetensors + config.json for inference", RunExport};
}

}  // namespace loom::cli

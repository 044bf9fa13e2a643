// `loom sample`: images for a prompt from a trained run (its newest checkpoint's moving
// average), a checkpoint, an export, a pipeline (a latent model with its VAE decoder) or
// a cascade (a base stage and super-resolution stages). The same seed gives the same
// images.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/sampling_flags.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "eval/image_grid.h"
#include "pipeline/model.h"
#include "stages/cascade.h"

namespace loom::cli {
namespace {

absl::Status RunSample(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, prompt, out;
  int64_t n = 4, seed = 0;
  SamplingFlags sampling;
  ArgParser args(name, "Generates images for a prompt from a run made by 'loom train' (the moving average\n"
                       "of its newest checkpoint), a checkpoint directory, an export, a pipeline or a cascade.");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory, an export, a pipeline or a cascade").Required();
  args.Flag("prompt", &prompt, "the caption to draw").Required();
  args.Flag("out", &out, "PNG file to write (a row of the n images)").Required();
  args.Flag("n", &n, "images");
  sampling.Add(args);
  args.Flag("seed", &seed, "noise seed; the same seed gives the same images");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (n < 1 || n > 256) return absl::InvalidArgumentError(name + ": --n must be 1..256");
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, "ema"));
  stages::GenerateOptions options;
  options.seed = static_cast<uint64_t>(seed);
  RETURN_IF_ERROR(sampling.Apply(name, model, &options));
  stages::TextToImage* generator = model.stage->AsTextToImage();
  if (generator == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                      "' model, which does not make images from text; pass a text-to-image model "
                                      "(a dit or ldm run or export, a pipeline or a cascade)");
  }
  ASSIGN_OR_RETURN(const torch::Tensor images, generator->Generate(std::vector<std::string>(n, prompt), options));
  RETURN_IF_ERROR(eval::WriteGrid(out, images, static_cast<int>(n)));
  log::Info() << "wrote " << out << ": " << n << " image(s) of '" << prompt << "' from " << model.source;
  nlohmann::json steps = options.steps, cfg = options.cfg;
  if (const auto* cascade = dynamic_cast<const stages::CascadeStage*>(model.stage.get())) {
    ASSIGN_OR_RETURN(const auto per_stage, cascade->Resolve(options));
    steps = nlohmann::json::array();
    cfg = nlohmann::json::array();
    for (const auto& s : per_stage) {
      steps.push_back(s.steps);
      cfg.push_back(s.cfg);
    }
  }
  log::Info() << nlohmann::json({{"out", out}, {"prompt", prompt}, {"n", n}, {"steps", steps}, {"cfg", cfg},
                                 {"seed", seed}, {"model", model.source}, {"kind", model.kind}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

Command SampleCommand() {
  return {"sample", "generate images from a trained model (run, export or pipeline)", RunSample};
}

}  // namespace loom::cli

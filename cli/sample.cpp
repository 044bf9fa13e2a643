// `loom sample`: images for a prompt from a trained run (its newest checkpoint's moving
// average), a checkpoint, an export or a pipeline (a latent model with its VAE decoder).
// The same seed gives the same images.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "eval/image_grid.h"
#include "pipeline/model.h"

namespace loom::cli {
namespace {

absl::Status RunSample(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, prompt, out;
  int64_t n = 4, steps = 50, seed = 0;
  double cfg = 4.0;
  ArgParser args(name, "Generates images for a prompt from a run made by 'loom train' (the moving average\n"
                       "of its newest checkpoint), a checkpoint directory, an export or a pipeline.");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory, an export or a pipeline").Required();
  args.Flag("prompt", &prompt, "the caption to draw").Required();
  args.Flag("out", &out, "PNG file to write (a row of the n images)").Required();
  args.Flag("n", &n, "images");
  args.Flag("steps", &steps, "sampling steps");
  args.Flag("cfg", &cfg, "classifier-free guidance scale (1 = none)");
  args.Flag("seed", &seed, "noise seed; the same seed gives the same images");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (n < 1 || n > 256 || steps < 1 || cfg < 0) {
    return absl::InvalidArgumentError(name + ": --n must be 1..256, --steps >= 1, --cfg >= 0");
  }
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, "ema"));
  stages::TextToImage* generator = model.stage->AsTextToImage();
  if (generator == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                      "' model, which does not make images from text; pass a text-to-image model "
                                      "(a dit run or export, or a pipeline)");
  }
  ASSIGN_OR_RETURN(const torch::Tensor images,
                   generator->Generate(std::vector<std::string>(n, prompt),
                                       {cfg, static_cast<int>(steps), static_cast<uint64_t>(seed)}));
  RETURN_IF_ERROR(eval::WriteGrid(out, images, static_cast<int>(n)));
  log::Info() << "wrote " << out << ": " << n << " image(s) of '" << prompt << "' from " << model.source;
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

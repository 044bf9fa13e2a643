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

namespace loom::cli {
namespace {

absl::Status RunSample(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, out;
  std::vector<std::string> prompts;
  int64_t n = 4, seed = 0;
  SamplingFlags sampling;
  ArgParser args(name, "Generates images for a prompt from a run made by 'loom train' (the moving average\n"
                       "of its newest checkpoint), a checkpoint directory, an export, a pipeline or a cascade.");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory, an export, a pipeline or a cascade").Required();
  args.Flag("prompt", &prompts, "the caption to draw; repeat it for a grid with one column per prompt").Required();
  args.Flag("out", &out, "PNG file to write (a row of the n images; with several prompts, n rows)").Required();
  args.Flag("n", &n, "images (per prompt)");
  sampling.Add(args);
  args.Flag("seed", &seed, "noise seed; the same seed gives the same images");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (n < 1 || n * static_cast<int64_t>(prompts.size()) > 256) {
    return absl::InvalidArgumentError(name + ": --n must be at least 1, and --n x prompts at most 256");
  }
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
  std::vector<std::string> rows;  // row r of the grid: every prompt once
  for (int64_t r = 0; r < n; ++r) rows.insert(rows.end(), prompts.begin(), prompts.end());
  ASSIGN_OR_RETURN(const torch::Tensor images, generator->Generate(rows, options));
  const int columns = prompts.size() == 1 ? static_cast<int>(n) : static_cast<int>(prompts.size());
  RETURN_IF_ERROR(eval::WriteGrid(out, images, columns));
  log::Info() << "wrote " << out << ": " << n << " image(s) of '" << prompts[0] << "'"
              << (prompts.size() > 1 ? " and " + std::to_string(prompts.size() - 1) + " more prompt(s)" : "")
              << " from " << model.source;
  ASSIGN_OR_RETURN(const nlohmann::ordered_json settings, DescribeSampling(model, options));
  const nlohmann::json prompt = prompts.size() == 1 ? nlohmann::json(prompts[0]) : nlohmann::json(prompts);
  log::Info() << nlohmann::json({{"out", out}, {"prompt", prompt}, {"n", n}, {"steps", settings["steps"]},
                                 {"cfg", settings["cfg"]},
                                 {"seed", seed}, {"model", model.source}, {"kind", model.kind}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

Command SampleCommand() {
  return {"sample", "generate images from a trained model (run, export or pipeline)", RunSample};
}

}  // namespace loom::cli

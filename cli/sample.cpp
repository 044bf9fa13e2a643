// `loom sample`: images for a prompt from a trained run (its newest checkpoint's EMA
// weights), a checkpoint or an export, by DDIM with classifier-free guidance. The same
// seed gives the same image.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/tokenizer.h"
#include "train/dit_stage.h"
#include "train/export.h"
#include "train/sample_grid.h"

namespace loom::cli {
namespace {

absl::Status RunSample(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, prompt, out;
  int64_t n = 4, steps = 50, seed = 0;
  double cfg = 4.0;
  ArgParser args(name, "Generates images for a prompt from a run made by 'loom train' (the EMA weights\n"
                       "of its newest checkpoint), a checkpoint directory or an export.");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory or an export").Required();
  args.Flag("prompt", &prompt, "the caption to draw").Required();
  args.Flag("out", &out, "PNG file to write (a row of the n images)").Required();
  args.Flag("n", &n, "images");
  args.Flag("steps", &steps, "DDIM steps");
  args.Flag("cfg", &cfg, "classifier-free guidance scale (1 = none)");
  args.Flag("seed", &seed, "noise seed; the same seed gives the same images");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (n < 1 || n > 256 || steps < 1 || cfg < 0) {
    return absl::InvalidArgumentError(name + ": --n must be 1..256, --steps >= 1, --cfg >= 0");
  }
  ASSIGN_OR_RETURN(train::ModelBundle bundle, train::LoadModel(model_dir, "ema"));
  ASSIGN_OR_RETURN(train::DiTStage stage, train::BuildStage(bundle));
  ASSIGN_OR_RETURN(auto tokenizer, data::Tokenizer::FromBytes(bundle.tokenizer_model, bundle.source + "/tokenizer.model"));
  const train::ExperimentOptions& o = bundle.options;
  torch::Tensor tokens = torch::empty({n, o.data.max_tokens}, torch::kLong);
  torch::Tensor mask = torch::empty({n, o.data.max_tokens}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) {
    tokenizer->Encode(prompt, o.data.max_tokens, tokens[i].data_ptr<int64_t>(), mask[i].data_ptr<bool>());
  }
  const torch::Tensor images = stage->Sample(tokens, mask, cfg, static_cast<int>(steps), static_cast<uint64_t>(seed));
  RETURN_IF_ERROR(train::WriteGrid(out, images, static_cast<int>(n)));
  log::Info() << "wrote " << out << ": " << n << " image(s) of '" << prompt << "'";
  log::Info() << nlohmann::json({{"out", out}, {"prompt", prompt}, {"n", n}, {"steps", steps}, {"cfg", cfg},
                                 {"seed", seed}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

Command SampleCommand() {
  return {"sample", "generate images from a trained run (DDIM with guidance)", RunSample};
}

}  // namespace loom::cli

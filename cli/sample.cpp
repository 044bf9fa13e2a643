// `loom sample`: images for a prompt from a trained run (its final weights, else its
// newest checkpoint's EMA weights), DDIM with classifier-free guidance. The same seed
// gives the same image.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/args.h"
#include "core/config/load.h"
#include "core/log.h"
#include "core/status.h"
#include "data/manifest.h"
#include "data/tokenizer.h"
#include "train/checkpoint.h"
#include "train/dit_stage.h"
#include "train/options.h"
#include "train/sample_grid.h"

namespace loom::cli {
namespace {

namespace fs = std::filesystem;

absl::Status RunSample(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, prompt, out;
  int64_t n = 4, steps = 50, seed = 0;
  double cfg = 4.0;
  ArgParser args(name, "Generates images for a prompt from a run directory made by 'loom train'\n"
                       "(its model.safetensors, else the EMA weights of its newest checkpoint).");
  args.Flag("model", &model_dir, "run directory").Required();
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
  const fs::path dir(model_dir);
  if (!fs::exists(dir / "config.yaml")) {
    return absl::NotFoundError(model_dir + ": not a run directory (no config.yaml); pass --model runs/NAME");
  }
  ASSIGN_OR_RETURN(train::ExperimentOptions o,
                   config::LoadFile<train::ExperimentOptions>((dir / "config.yaml").string(), {}));
  // Weights and tokenizer: the final ones, else the newest checkpoint's.
  std::map<std::string, torch::Tensor> weights;
  std::shared_ptr<const data::Tokenizer> tokenizer;
  ASSIGN_OR_RETURN(auto latest, train::LoadLatestCheckpoint(dir.string()));
  if (fs::exists(dir / "model.safetensors")) {
    ASSIGN_OR_RETURN(weights, train::ReadSafetensors((dir / "model.safetensors").string()));
  } else if (latest) {
    weights = latest->ema.empty() ? latest->model : latest->ema;
  } else {
    return absl::NotFoundError(model_dir + " has no model.safetensors and no checkpoint yet");
  }
  if (latest) {
    ASSIGN_OR_RETURN(tokenizer, data::Tokenizer::Load(latest->dir + "/tokenizer.model"));
  } else {
    ASSIGN_OR_RETURN(tokenizer, data::Tokenizer::Load(o.data.tokenizer.empty() ? o.data.train + "/tokenizer.model"
                                                                              : o.data.tokenizer));
  }
  const int64_t channels = weights.count("dit.x_embedder.proj.weight") ? weights["dit.x_embedder.proj.weight"].size(1) : 1;
  ASSIGN_OR_RETURN(models::DiTConfig dit, models::ResolveDiT(o.model, o.data.image_size, channels));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion diffusion, diffusion::GaussianDiffusion::Create(o.diffusion));
  train::DiTStage stage(dit, o.model.text, o.data.max_tokens, diffusion);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : stage->named_parameters()) {
      const auto it = weights.find(item.key());
      if (it == weights.end() || it->second.sizes() != item.value().sizes()) {
        return absl::InvalidArgumentError(model_dir + ": its weights do not fit its config (parameter '" +
                                          item.key() + "')");
      }
      item.value().copy_(it->second);
    }
  }
  stage->eval();
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

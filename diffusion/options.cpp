// Schema of the `diffusion:` config section (see options.h).
#include "diffusion/options.h"

namespace loom::diffusion {

void DiffusionOptions::Describe(config::Fields<DiffusionOptions>& f) {
  using O = DiffusionOptions;
  f.Add("schedule", &O::schedule, "noise schedule").Rule(config::OneOf({"linear", "cosine"}));
  f.Add("timesteps", &O::timesteps, "diffusion steps in training").Rule(config::Between(2, 100000));
  f.Add("prediction", &O::prediction, "what the network predicts")
      .Rule(config::OneOf({"eps", "v", "x0"}));
  f.Add("loss_weight", &O::loss_weight, "per-timestep loss weighting")
      .Rule(config::OneOf({"uniform", "min_snr"}));
  f.Add("snr_gamma", &O::snr_gamma, "gamma of min-SNR weighting").Rule(config::Positive());
}

}  // namespace loom::diffusion

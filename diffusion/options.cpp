// Schema of the `diffusion:` config section (see options.h).
#include "diffusion/options.h"

namespace loom::diffusion {

void FlowOptions::Describe(config::Fields<FlowOptions>& f) {
  using O = FlowOptions;
  f.Add("logit_mean", &O::logit_mean, "mean of the logit-normal training times (SD3: 0)").Rule(config::Between(-5, 5));
  f.Add("logit_std", &O::logit_std, "spread of the logit-normal training times (SD3: 1)").Rule(config::Between(0.01, 5));
  f.Add("shift", &O::shift, "time shift alpha (> 1 moves times towards noise); 0: sqrt(tokens / shift_tokens)")
      .Rule(config::Between(0, 100));
  f.Add("shift_tokens", &O::shift_tokens, "tokens per sample at which the automatic shift is 1")
      .Rule(config::Positive());
}

void DiffusionOptions::Describe(config::Fields<DiffusionOptions>& f) {
  using O = DiffusionOptions;
  f.Add("process", &O::process, "gaussian (DDPM/DDIM) or flow (rectified flow, velocity target)")
      .Rule(config::OneOf({"gaussian", "flow"}));
  f.Add("schedule", &O::schedule, "gaussian: noise schedule").Rule(config::OneOf({"linear", "cosine"}));
  f.Add("timesteps", &O::timesteps, "gaussian: diffusion steps in training").Rule(config::Between(2, 100000));
  f.Add("prediction", &O::prediction, "gaussian: what the network predicts")
      .Rule(config::OneOf({"eps", "v", "x0"}));
  f.Add("loss_weight", &O::loss_weight, "gaussian: per-timestep loss weighting")
      .Rule(config::OneOf({"uniform", "min_snr"}));
  f.Add("snr_gamma", &O::snr_gamma, "gaussian: gamma of min-SNR weighting").Rule(config::Positive());
  f.Add("flow", &O::flow, "flow: the training and sampling times");
}

}  // namespace loom::diffusion

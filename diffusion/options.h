// diffusion: the `diffusion:` section of an experiment config (process and objective).
#pragma once

#include <string>

#include "core/config/schema.h"

namespace loom::diffusion {

// The rectified flow's times (diffusion/rectified_flow.h).
struct FlowOptions {
  double logit_mean = 0.0;  // training times: sigmoid(logit_mean + logit_std * N(0, 1))
  double logit_std = 1.0;
  double shift = 0.0;       // the time shift alpha; 0: sqrt(tokens / shift_tokens)
  int64_t shift_tokens = 256;  // tokens per sample at which the shift is 1

  static void Describe(config::Fields<FlowOptions>& f);
};

struct DiffusionOptions {
  std::string process = "gaussian";  // gaussian | flow
  // Gaussian diffusion
  std::string schedule = "cosine";
  int timesteps = 1000;
  std::string prediction = "v";
  std::string loss_weight = "min_snr";
  double snr_gamma = 5.0;
  // Rectified flow
  FlowOptions flow;

  static void Describe(config::Fields<DiffusionOptions>& f);
};

}  // namespace loom::diffusion

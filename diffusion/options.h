// diffusion: the `diffusion:` section of an experiment config (process and objective).
#pragma once

#include <string>

#include "core/config/schema.h"

namespace loom::diffusion {

struct DiffusionOptions {
  std::string schedule = "cosine";
  int timesteps = 1000;
  std::string prediction = "v";
  std::string loss_weight = "min_snr";
  double snr_gamma = 5.0;

  static void Describe(config::Fields<DiffusionOptions>& f);
};

}  // namespace loom::diffusion

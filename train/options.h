// train: the `run:`, `optim:` and `train:` sections, and ExperimentOptions, the whole
// config tree of one experiment (one section per component, mirroring the code).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "data/options.h"
#include "diffusion/options.h"
#include "dist/options.h"
#include "models/options.h"

namespace loom::train {

struct RunOptions {
  std::string name = "loom";
  std::string dir = "runs";
  int64_t seed = 0;

  static void Describe(config::Fields<RunOptions>& f);
};

struct OptimOptions {
  double lr = 3e-4;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t warmup = 500;
  std::string decay = "cosine";
  double min_lr_ratio = 0.1;
  double clip_grad = 1.0;

  static void Describe(config::Fields<OptimOptions>& f);
};

struct TrainOptions {
  int64_t steps = 20000;
  int grad_accum = 1;
  double ema = 0.9999;
  std::string precision = "fp32";
  int64_t log_every = 50;
  int64_t sample_every = 1000;
  int64_t checkpoint_every = 1000;
  int keep_checkpoints = 3;
  std::string on_nan = "stop";

  static void Describe(config::Fields<TrainOptions>& f);
};

// Judged evaluation during training (train/prompt_eval.h), on rank 0.
struct EvalOptions {
  int64_t every = 0;        // steps between evaluations; 0 = never
  std::string judge = "";   // judge directory made by `loom eval classifier`
  int64_t per_class = 10;
  int steps = 25;
  double cfg = 4.0;
  std::vector<std::string> templates;  // empty: the default templates

  static void Describe(config::Fields<EvalOptions>& f);
};

struct ExperimentOptions {
  RunOptions run;
  data::DataOptions data;
  models::ModelOptions model;
  diffusion::DiffusionOptions diffusion;
  OptimOptions optim;
  TrainOptions train;
  EvalOptions eval;
  dist::DistOptions dist;

  static void Describe(config::Fields<ExperimentOptions>& f);
};

}  // namespace loom::train

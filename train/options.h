// train: the `run:`, `train:` and `optim:` sections of an experiment config (run identity,
// the loop's schedule of steps, logging, checkpoints, previews and evaluations; AdamW,
// its learning-rate schedule and clipping, which each trainable of a stage has its own
// of). Torch-free; train/optim.h turns an optim section into AdamW settings and LRs.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/config/schema.h"

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
  int64_t eval_every = 0;
  int64_t checkpoint_every = 1000;
  int keep_checkpoints = 3;
  std::string on_nan = "stop";
  bool tensorboard = true;

  static void Describe(config::Fields<TrainOptions>& f);
};

}  // namespace loom::train

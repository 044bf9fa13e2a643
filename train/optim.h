// What an `optim:` section (train/options.h) gives: the AdamW settings and the learning
// rate at each step. Each trainable of a stage has its own.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "dist/strategy.h"
#include "train/options.h"

namespace loom::train {

// The AdamW settings of an optim section (the LR is set per step).
inline dist::AdamWSettings AdamWSettingsOf(const OptimOptions& o) {
  dist::AdamWSettings adamw;
  adamw.lr = o.lr;
  adamw.beta1 = o.betas[0];
  adamw.beta2 = o.betas[1];
  adamw.eps = o.eps;
  adamw.weight_decay = o.weight_decay;
  return adamw;
}

// Linear warmup from 0 to lr over `warmup` steps, then constant or a cosine decay to
// min_lr_ratio * lr at `total` steps. `step` counts from 0 (of this optimizer's steps).
inline double LearningRate(const OptimOptions& o, int64_t step, int64_t total) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  if (o.decay == "constant") return o.lr;
  const double span = std::max<int64_t>(1, total - o.warmup);
  const double progress = std::clamp(static_cast<double>(step - o.warmup) / span, 0.0, 1.0);
  const double floor = o.min_lr_ratio * o.lr;
  return floor + (o.lr - floor) * 0.5 * (1 + std::cos(M_PI * progress));
}

}  // namespace loom::train

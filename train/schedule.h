// The optimizer settings, learning-rate schedule and EMA of the weights.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dist/strategy.h"
#include "train/options.h"

namespace loom::train {

// The AdamW settings of the `optim:` section (the LR is set per step).
inline dist::AdamWSettings AdamWSettingsOf(const OptimOptions& o) {
  dist::AdamWSettings adamw;
  adamw.lr = o.lr;
  adamw.beta1 = o.betas[0];
  adamw.beta2 = o.betas[1];
  adamw.eps = o.eps;
  adamw.weight_decay = o.weight_decay;
  return adamw;
}

// Linear warmup from 0 to optim.lr over optim.warmup steps, then constant or a cosine
// decay to min_lr_ratio * lr at `total` steps. `step` counts from 0.
inline double LearningRate(const OptimOptions& o, int64_t step, int64_t total) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  if (o.decay == "constant") return o.lr;
  const double span = std::max<int64_t>(1, total - o.warmup);
  const double progress = std::clamp(static_cast<double>(step - o.warmup) / span, 0.0, 1.0);
  const double floor = o.min_lr_ratio * o.lr;
  return floor + (o.lr - floor) * 0.5 * (1 + std::cos(M_PI * progress));
}

// Exponential moving average of a module's parameters (the weights sampled from).
class Ema {
 public:
  Ema(torch::nn::Module& module, double decay) : decay_(decay) {
    torch::NoGradGuard no_grad;
    for (const auto& p : module.named_parameters()) {
      names_.push_back(p.key());
      shadow_.push_back(p.value().detach().clone());
    }
  }
  // shadow = decay * shadow + (1 - decay) * param. Warm start: the effective decay is
  // min(decay, (1 + n) / (10 + n)) so early samples are not dominated by the init.
  void Update(torch::nn::Module& module) {
    torch::NoGradGuard no_grad;
    ++updates_;
    const double d = std::min(decay_, (1.0 + updates_) / (10.0 + updates_));
    const auto params = module.parameters();
    for (size_t i = 0; i < params.size(); ++i) shadow_[i].mul_(d).add_(params[i].detach(), 1 - d);
  }
  // Copies the averaged weights into `module` (for sampling a copy of the model).
  void CopyTo(torch::nn::Module& module) const {
    torch::NoGradGuard no_grad;
    const auto params = module.parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(shadow_[i]);
  }
  // Restores the averages (by parameter name) and the update count of a checkpoint.
  bool Load(const std::map<std::string, torch::Tensor>& tensors, int64_t updates) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < names_.size(); ++i) {
      const auto it = tensors.find(names_[i]);
      if (it == tensors.end() || it->second.sizes() != shadow_[i].sizes()) return false;
      shadow_[i].copy_(it->second);
    }
    updates_ = updates;
    return true;
  }
  const std::vector<torch::Tensor>& shadow() const { return shadow_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  double decay_;
  int64_t updates_ = 0;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> shadow_;
};

}  // namespace loom::train

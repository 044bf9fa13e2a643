// Exponential moving average of the parameters a rank holds (the weights sampled from).
// It averages the strategy's parameter slices, so under zero3 each rank keeps 1/N of it
// and a step that released the gathered parameters leaves it intact.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "dist/strategy.h"

namespace loom::train {

class Ema {
 public:
  Ema(std::vector<dist::Slice> slices, double decay) : decay_(decay), slices_(std::move(slices)) {
    torch::NoGradGuard no_grad;
    for (const dist::Slice& s : slices_) shadow_.push_back(s.data.detach().clone());
  }
  // shadow = d * shadow + (1 - d) * param with d = min(decay, (1 + n) / (10 + n)) after n
  // updates: a warm start, so early samples are not dominated by the initialisation.
  void Update() {
    torch::NoGradGuard no_grad;
    ++updates_;
    const double d = std::min(decay_, (1.0 + updates_) / (10.0 + updates_));
    for (size_t i = 0; i < slices_.size(); ++i) shadow_[i].mul_(d).add_(slices_[i].data.detach(), 1 - d);
  }
  const std::vector<dist::Slice>& slices() const { return slices_; }
  // The averages, laid out as slices() (whole parameters, or this rank's pieces).
  const std::vector<torch::Tensor>& shadow() const { return shadow_; }
  std::vector<torch::Tensor>& shadow() { return shadow_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t n) { updates_ = n; }

 private:
  double decay_;
  int64_t updates_ = 0;
  std::vector<dist::Slice> slices_;
  std::vector<torch::Tensor> shadow_;
};

}  // namespace loom::train

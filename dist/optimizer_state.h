// Moving AdamW state between LibTorch's optimizer (keyed by parameter) and whole
// per-parameter tensors, for checkpoints that any strategy and world size can load.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom::dist {

// The AdamW state of `param` (undefined tensors and step 0 before its first update).
struct AdamWSlot {
  int64_t step = 0;
  torch::Tensor exp_avg, exp_avg_sq;
};
AdamWSlot GetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param);
void SetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param, const AdamWSlot& slot);

// Looks up "<name>.exp_avg" / "<name>.exp_avg_sq" with the expected shape.
absl::Status FindState(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                       torch::IntArrayRef shape, torch::Tensor* exp_avg, torch::Tensor* exp_avg_sq);

}  // namespace loom::dist

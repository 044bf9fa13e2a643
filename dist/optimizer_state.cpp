// AdamW state access (see optimizer_state.h).
#include "dist/optimizer_state.h"

namespace loom::dist {

AdamWSlot GetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  AdamWSlot slot;
  auto it = optimizer.state().find(param.unsafeGetTensorImpl());
  if (it == optimizer.state().end()) return slot;
  const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
  slot.step = s.step();
  slot.exp_avg = s.exp_avg();
  slot.exp_avg_sq = s.exp_avg_sq();
  return slot;
}

void SetAdamWState(torch::optim::Optimizer& optimizer, const torch::Tensor& param, const AdamWSlot& slot) {
  auto state = std::make_unique<torch::optim::AdamWParamState>();
  state->step(slot.step);
  state->exp_avg(slot.exp_avg.to(param.device(), param.scalar_type()).clone());
  state->exp_avg_sq(slot.exp_avg_sq.to(param.device(), param.scalar_type()).clone());
  optimizer.state()[param.unsafeGetTensorImpl()] = std::move(state);
}

absl::Status FindState(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                       torch::IntArrayRef shape, torch::Tensor* exp_avg, torch::Tensor* exp_avg_sq) {
  const auto a = tensors.find(name + ".exp_avg");
  const auto b = tensors.find(name + ".exp_avg_sq");
  if (a == tensors.end() || b == tensors.end()) {
    return absl::InvalidArgumentError("the checkpoint has no optimizer state for parameter '" + name +
                                      "' (a checkpoint of another model?)");
  }
  if (a->second.sizes() != shape || b->second.sizes() != shape) {
    return absl::InvalidArgumentError("optimizer state of '" + name + "' has another shape than the parameter");
  }
  *exp_avg = a->second;
  *exp_avg_sq = b->second;
  return absl::OkStatus();
}

}  // namespace loom::dist

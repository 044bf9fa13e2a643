// AdamW state access (see optimizer_state.h).
#include "dist/optimizer_state.h"

#include <cmath>

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

void SetLr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

int64_t OptimizerBytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& [key, state] : optimizer.state()) {
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
    bytes += Bytes(s.exp_avg()) + Bytes(s.exp_avg_sq()) + Bytes(s.max_exp_avg_sq());
  }
  return bytes;
}

absl::StatusOr<double> ClipShardedGradNorm(ProcessGroup& group, const std::vector<torch::Tensor>& grads,
                                           double max_norm) {
  torch::NoGradGuard no_grad;
  torch::Tensor sum = torch::zeros({1}, torch::kFloat64);
  for (const auto& g : grads) sum += g.to(torch::kFloat64).pow(2).sum();
  RETURN_IF_ERROR(group.AllReduce(sum, ReduceOp::kSum, Dispatch::kCaller)->Wait());
  const double norm = std::sqrt(sum.item<double>());
  if (max_norm > 0 && norm > max_norm) {
    for (const auto& g : grads) torch::Tensor(g).mul_(max_norm / (norm + 1e-6));
  }
  return norm;
}

absl::Status GatherShardState(ProcessGroup& group, torch::optim::Optimizer& optimizer,
                              const torch::Tensor& shard, int64_t padded,
                              const std::vector<FlatEntry>& entries,
                              std::vector<std::pair<std::string, torch::Tensor>>* out, int64_t* step) {
  const AdamWSlot slot = GetAdamWState(optimizer, shard);
  if (!slot.exp_avg.defined()) return absl::OkStatus();  // the same on every rank: they step together
  *step = slot.step;
  for (const auto& [suffix, part] : {std::pair{".exp_avg", slot.exp_avg}, {".exp_avg_sq", slot.exp_avg_sq}}) {
    torch::Tensor full = torch::empty({padded}, part.options());
    RETURN_IF_ERROR(group.AllGather(full, part.contiguous(), Dispatch::kCaller)->Wait());
    for (const FlatEntry& e : entries) {
      int64_t numel = 1;
      for (int64_t d : e.shape) numel *= d;
      out->push_back({e.name + suffix, full.narrow(0, e.offset, numel).view(e.shape).clone()});
    }
  }
  return absl::OkStatus();
}

absl::Status ScatterShardState(int rank, int world, torch::optim::Optimizer& optimizer,
                               const torch::Tensor& shard, int64_t padded,
                               const std::vector<FlatEntry>& entries,
                               const std::map<std::string, torch::Tensor>& tensors, int64_t step) {
  torch::Tensor avg = torch::zeros({padded}, shard.options().requires_grad(false));
  torch::Tensor sq = torch::zeros_like(avg);
  for (const FlatEntry& e : entries) {
    torch::Tensor a, q;
    RETURN_IF_ERROR(FindState(tensors, e.name, e.shape, &a, &q));
    avg.narrow(0, e.offset, a.numel()).copy_(a.reshape({-1}));
    sq.narrow(0, e.offset, q.numel()).copy_(q.reshape({-1}));
  }
  const int64_t n = padded / world;
  SetAdamWState(optimizer, shard, {step, avg.narrow(0, rank * n, n), sq.narrow(0, rank * n, n)});
  return absl::OkStatus();
}

}  // namespace loom::dist

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
  // Summed where the gradients are, so the step's only host sync is reading the norm.
  torch::Tensor sum = torch::zeros({1}, torch::TensorOptions(torch::kFloat64).device(group.device()));
  for (const auto& g : grads) sum += g.to(torch::kFloat64).pow(2).sum();
  RETURN_IF_ERROR(group.AllReduce(sum, ReduceOp::kSum, Dispatch::kCaller)->Wait());
  const double norm = std::sqrt(sum.item<double>());
  if (max_norm > 0 && norm > max_norm) {
    for (const auto& g : grads) torch::Tensor(g).mul_(max_norm / (norm + 1e-6));
  }
  return norm;
}

int64_t FlatEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<Slice> FlatShardSlices(const std::vector<FlatEntry>& entries, int64_t shard_begin,
                                   const torch::Tensor& shard, const std::string& suffix) {
  std::vector<Slice> out;
  const int64_t shard_end = shard_begin + shard.numel();
  for (const FlatEntry& e : entries) {
    const int64_t lo = std::max(shard_begin, e.offset), hi = std::min(shard_end, e.offset + e.numel());
    if (lo >= hi) continue;
    out.push_back({e.name + suffix, e.shape, lo - e.offset, hi - e.offset, shard.narrow(0, lo - shard_begin, hi - lo)});
  }
  return out;
}

absl::Status ReadFlatShard(const std::vector<FlatEntry>& entries, int64_t shard_begin, const RangeReader& read,
                           const std::string& suffix, torch::Tensor shard) {
  torch::NoGradGuard no_grad;
  for (Slice& s : FlatShardSlices(entries, shard_begin, shard, suffix)) {
    ASSIGN_OR_RETURN(torch::Tensor piece, read(s.name, s.begin, s.end));
    if (piece.numel() != s.end - s.begin) {
      return absl::DataLossError("stored state '" + s.name + "' has " + std::to_string(piece.numel()) +
                                 " elements in [" + std::to_string(s.begin) + ", " + std::to_string(s.end) + ")");
    }
    s.data.copy_(piece.reshape({-1}));
  }
  return absl::OkStatus();
}

absl::Status GatherFlatOnRoot(ProcessGroup& group, const std::vector<FlatEntry>& entries, int64_t padded,
                              const torch::Tensor& shard, std::map<std::string, torch::Tensor>* out) {
  torch::NoGradGuard no_grad;
  torch::Tensor full = torch::empty({padded}, shard.options());
  RETURN_IF_ERROR(group.AllGather(full, shard.detach().contiguous(), Dispatch::kCaller)->Wait());
  if (group.rank() != 0) return absl::OkStatus();
  for (const FlatEntry& e : entries) (*out)[e.name] = full.narrow(0, e.offset, e.numel()).view(e.shape).clone();
  return absl::OkStatus();
}

void DecayMask::Apply(double lr, double weight_decay) const {
  if (!target_.defined() || weight_decay == 0) return;
  torch::NoGradGuard no_grad;
  // As AdamW decays (p *= 1 - lr * wd) where the mask is 1, and leaves the rest.
  target_.mul_(1 - lr * weight_decay * mask_);
}

}  // namespace loom::dist

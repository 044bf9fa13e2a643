// DDP and ZeRO-1/2 (see strategy.h).
#include "dist/strategy.h"

#include <cmath>

#include "core/log.h"
#include "dist/grad_reducer.h"
#include "dist/optimizer_state.h"
#include "dist/zero3.h"

namespace loom::dist {
namespace {

// FNV-1a of the parameter names and shapes: equal on every rank iff the models agree.
int64_t ModelFingerprint(torch::nn::Module& model, std::string* description) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& item : model.named_parameters()) {
    std::string text = item.key() + ":";
    for (int64_t d : item.value().sizes()) text += std::to_string(d) + ",";
    text += ";";
    if (description->size() < 200) *description += text;
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  }
  return static_cast<int64_t>(h);
}

// With a no-decay filter the decay is applied by hand (DecayMask), so AdamW gets none.
torch::optim::AdamWOptions ToOptions(const AdamWSettings& s) {
  return torch::optim::AdamWOptions(s.lr)
      .betas({s.beta1, s.beta2})
      .eps(s.eps)
      .weight_decay(s.no_decay ? 0.0 : s.weight_decay);
}

// 1 where parameter `name` decays, as a tensor like `like`.
torch::Tensor DecayOnes(const AdamWSettings& s, const std::string& name, const torch::Tensor& like) {
  return torch::full_like(like, s.no_decay(name) ? 0.0 : 1.0).reshape({-1});
}

std::vector<torch::Tensor> TrainableParams(torch::nn::Module& model, std::vector<std::string>* names) {
  std::vector<torch::Tensor> params;
  for (const auto& item : model.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    params.push_back(item.value());
    names->push_back(item.key());
  }
  return params;
}

// Replicated parameters and optimizer state; gradients all-reduced during backward. With
// one process there is nothing to reduce: no buckets, autograd's own .grad tensors.
class Ddp : public Strategy {
 public:
  Ddp(std::vector<torch::Tensor> params, std::vector<std::string> names, ProcessGroup& group,
      const DistOptions& options, const AdamWSettings& adamw)
      : rank_(group.rank()), params_(params), names_(names), adamw_(adamw), optimizer_(params, ToOptions(adamw)) {
    if (group.size() > 1) {
      reducer_ = std::make_unique<GradReducer>(params, std::move(names),
                                               BucketLayout::Make(params, options.bucket_mb, 1), group,
                                               GradReducer::Mode::kAllReduce, options.overlap);
    }
    if (adamw.no_decay) {
      for (size_t i = 0; i < params_.size(); ++i) {
        decay_.emplace_back(params_[i].detach().reshape({-1}), DecayOnes(adamw, names_[i], params_[i]));
      }
    }
  }

  std::string name() const override { return "ddp"; }
  void ZeroGrad() override {
    if (reducer_) return reducer_->ZeroGrad();
    for (torch::Tensor& p : params_) p.mutable_grad() = torch::Tensor();  // autograd hands over its buffers
  }
  void SetSync(bool sync) override {
    if (reducer_) reducer_->SetSync(sync);
  }
  absl::Status FinishBackward() override {
    if (reducer_) return reducer_->Finish();
    // As the reducer does: a parameter without a gradient gets zeros, so AdamW treats it alike.
    for (torch::Tensor& p : params_) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<double> ClipGradNorm(double max_norm) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads;
    if (reducer_) {
      for (size_t b = 0; b < reducer_->layout().buckets.size(); ++b) grads.push_back(reducer_->bucket_grad(b));
    } else {
      for (const torch::Tensor& p : params_) grads.push_back(p.grad());
    }
    double sum = 0;
    for (const torch::Tensor& g : grads) sum += g.pow(2).sum().item<double>();
    const double norm = std::sqrt(sum);
    if (max_norm > 0 && norm > max_norm) {
      const double scale = max_norm / (norm + 1e-6);
      for (torch::Tensor& g : grads) g.mul_(scale);
    }
    return norm;
  }

  absl::Status Step(double lr) override {
    for (const DecayMask& d : decay_) d.Apply(lr, adamw_.weight_decay);
    SetLr(optimizer_, lr);
    optimizer_.step();
    return absl::OkStatus();
  }

  MemoryStats Memory() const override {
    MemoryStats m;
    for (const auto& p : params_) m.param_bytes += Bytes(p);
    if (reducer_) {
      m.grad_bytes = reducer_->GradBytes();
    } else {
      for (const auto& p : params_) m.grad_bytes += p.grad().defined() ? Bytes(p.grad()) : Bytes(p);
    }
    m.optimizer_bytes = OptimizerBytes(optimizer_);
    return m;
  }

  std::vector<Slice> ParameterSlices() override {
    std::vector<Slice> out;
    for (size_t i = 0; i < params_.size(); ++i) {
      out.push_back({names_[i], params_[i].sizes().vec(), 0, params_[i].numel(), params_[i].detach().view({-1})});
    }
    return out;
  }
  bool parameters_replicated() const override { return true; }

  OptimizerSlices OptimizerState() override {
    OptimizerSlices out;
    out.replicated = true;
    for (size_t i = 0; i < params_.size(); ++i) {
      const AdamWSlot slot = GetAdamWState(optimizer_, params_[i]);
      if (!slot.exp_avg.defined()) continue;
      out.step = slot.step;
      const std::vector<int64_t> shape = params_[i].sizes().vec();
      out.slices.push_back({names_[i] + ".exp_avg", shape, 0, params_[i].numel(), slot.exp_avg.view({-1})});
      out.slices.push_back({names_[i] + ".exp_avg_sq", shape, 0, params_[i].numel(), slot.exp_avg_sq.view({-1})});
    }
    return out;
  }

  absl::Status LoadOptimizerState(const RangeReader& read, int64_t step) override {
    if (step == 0) return absl::OkStatus();
    for (size_t i = 0; i < params_.size(); ++i) {
      AdamWSlot slot;
      slot.step = step;
      const int64_t n = params_[i].numel();
      ASSIGN_OR_RETURN(slot.exp_avg, read(names_[i] + ".exp_avg", 0, n));
      ASSIGN_OR_RETURN(slot.exp_avg_sq, read(names_[i] + ".exp_avg_sq", 0, n));
      slot.exp_avg = slot.exp_avg.reshape(params_[i].sizes());
      slot.exp_avg_sq = slot.exp_avg_sq.reshape(params_[i].sizes());
      SetAdamWState(optimizer_, params_[i], slot);
    }
    return absl::OkStatus();
  }

  // Replicated values are whole on every rank: rank 0 reshapes its own.
  absl::StatusOr<std::map<std::string, torch::Tensor>> GatherOnRoot(const std::vector<torch::Tensor>& values) override {
    std::map<std::string, torch::Tensor> out;
    if (rank_ != 0) return out;
    for (size_t i = 0; i < params_.size(); ++i) out[names_[i]] = values[i].detach().view(params_[i].sizes()).clone();
    return out;
  }

 private:
  int rank_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  AdamWSettings adamw_;
  torch::optim::AdamW optimizer_;
  std::unique_ptr<GradReducer> reducer_;  // null with one process
  std::vector<DecayMask> decay_;
};

// ZeRO-1 and -2: the parameters become views of flat per-bucket buffers; rank r owns
// shard r of every bucket and runs AdamW on it alone; the updated shards are
// all-gathered back into the buffers. Shard-wise AdamW is elementwise, so it computes
// what replicated AdamW computes.
class Zero : public Strategy {
 public:
  Zero(int stage, std::vector<torch::Tensor> params, std::vector<std::string> names,
       ProcessGroup& group, const DistOptions& options, const AdamWSettings& adamw)
      : stage_(stage),
        group_(group),
        params_(params),
        names_(names),
        adamw_(adamw),
        layout_(BucketLayout::Make(params, options.bucket_mb, group.size())),
        reducer_(params, std::move(names), layout_, group,
                 stage == 1 ? GradReducer::Mode::kAllReduce : GradReducer::Mode::kReduceScatter,
                 options.overlap) {
    torch::NoGradGuard no_grad;
    const int64_t world = group.size(), rank = group.rank();
    for (const auto& bucket : layout_.buckets) {
      const torch::Tensor& first = params_[bucket.entries.front().param];
      torch::Tensor flat = torch::zeros({bucket.padded}, first.options().requires_grad(false));
      torch::Tensor decays = adamw.no_decay ? torch::zeros({bucket.padded}, flat.options()) : torch::Tensor();
      for (const auto& e : bucket.entries) {
        torch::Tensor& p = params_[e.param];
        flat.narrow(0, e.offset, e.numel).copy_(p.reshape({-1}));
        if (decays.defined()) decays.narrow(0, e.offset, e.numel).copy_(DecayOnes(adamw, names_[e.param], p));
        p.set_data(flat.narrow(0, e.offset, e.numel).view(p.sizes()));
      }
      const int64_t n = bucket.padded / world;
      std::vector<FlatEntry> entries;
      for (const auto& e : bucket.entries) entries.push_back({names_[e.param], e.offset, params_[e.param].sizes().vec()});
      entries_.push_back(std::move(entries));
      flat_params_.push_back(flat);
      shards_.push_back(flat.narrow(0, rank * n, n).detach().requires_grad_(true));
      if (decays.defined()) decay_.emplace_back(shards_.back().detach(), decays.narrow(0, rank * n, n));
    }
    optimizer_ = std::make_unique<torch::optim::AdamW>(shards_, ToOptions(adamw));
  }

  std::string name() const override { return stage_ == 1 ? "zero1" : "zero2"; }
  void ZeroGrad() override { reducer_.ZeroGrad(); }
  void SetSync(bool sync) override { reducer_.SetSync(sync); }

  absl::Status FinishBackward() override {
    RETURN_IF_ERROR(reducer_.Finish());
    // Point each shard's .grad at this rank's slice of the reduced gradient.
    const int64_t world = group_.size(), rank = group_.rank();
    for (size_t b = 0; b < shards_.size(); ++b) {
      const int64_t n = layout_.buckets[b].padded / world;
      shards_[b].mutable_grad() =
          stage_ == 1 ? reducer_.bucket_grad(b).narrow(0, rank * n, n) : reducer_.shard_grad(b);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<double> ClipGradNorm(double max_norm) override {
    std::vector<torch::Tensor> grads;
    for (const auto& shard : shards_) grads.push_back(shard.grad());
    return ClipShardedGradNorm(group_, grads, max_norm);
  }

  absl::Status Step(double lr) override {
    for (const DecayMask& d : decay_) d.Apply(lr, adamw_.weight_decay);
    SetLr(*optimizer_, lr);
    optimizer_->step();
    std::vector<std::shared_ptr<Work>> work;
    for (size_t b = 0; b < shards_.size(); ++b) {
      work.push_back(group_.AllGather(flat_params_[b], shards_[b].detach(), Dispatch::kCaller));
    }
    for (auto& w : work) RETURN_IF_ERROR(w->Wait());
    return absl::OkStatus();
  }

  MemoryStats Memory() const override {
    MemoryStats m;
    for (const auto& f : flat_params_) m.param_bytes += Bytes(f);
    m.grad_bytes = reducer_.GradBytes();
    m.optimizer_bytes = OptimizerBytes(*optimizer_);
    return m;
  }

  std::vector<Slice> ParameterSlices() override {
    std::vector<Slice> out;
    for (size_t i = 0; i < params_.size(); ++i) {
      out.push_back({names_[i], params_[i].sizes().vec(), 0, params_[i].numel(), params_[i].detach().view({-1})});
    }
    return out;
  }
  bool parameters_replicated() const override { return true; }

  OptimizerSlices OptimizerState() override {
    OptimizerSlices out;
    for (size_t b = 0; b < shards_.size(); ++b) {
      const AdamWSlot slot = GetAdamWState(*optimizer_, shards_[b]);
      if (!slot.exp_avg.defined()) continue;
      out.step = slot.step;
      const int64_t begin = group_.rank() * shards_[b].numel();
      for (const auto& [suffix, state] : {std::pair{".exp_avg", slot.exp_avg}, {".exp_avg_sq", slot.exp_avg_sq}}) {
        for (Slice& s : FlatShardSlices(entries_[b], begin, state, suffix)) out.slices.push_back(std::move(s));
      }
    }
    return out;
  }

  absl::Status LoadOptimizerState(const RangeReader& read, int64_t step) override {
    if (step == 0) return absl::OkStatus();
    for (size_t b = 0; b < shards_.size(); ++b) {
      const int64_t begin = group_.rank() * shards_[b].numel();
      AdamWSlot slot;
      slot.step = step;
      slot.exp_avg = torch::zeros_like(shards_[b]).detach();
      slot.exp_avg_sq = torch::zeros_like(shards_[b]).detach();
      RETURN_IF_ERROR(ReadFlatShard(entries_[b], begin, read, ".exp_avg", slot.exp_avg));
      RETURN_IF_ERROR(ReadFlatShard(entries_[b], begin, read, ".exp_avg_sq", slot.exp_avg_sq));
      SetAdamWState(*optimizer_, shards_[b], slot);
    }
    return absl::OkStatus();
  }

  // The parameters are replicated: rank 0 reshapes its own values.
  absl::StatusOr<std::map<std::string, torch::Tensor>> GatherOnRoot(const std::vector<torch::Tensor>& values) override {
    std::map<std::string, torch::Tensor> out;
    if (group_.rank() != 0) return out;
    for (size_t i = 0; i < params_.size(); ++i) out[names_[i]] = values[i].detach().view(params_[i].sizes()).clone();
    return out;
  }

 private:
  int stage_;
  ProcessGroup& group_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  AdamWSettings adamw_;
  BucketLayout layout_;
  GradReducer reducer_;
  std::vector<torch::Tensor> flat_params_;
  std::vector<torch::Tensor> shards_;
  std::vector<std::vector<FlatEntry>> entries_;  // per bucket: each parameter's place
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<DecayMask> decay_;
};

}  // namespace

absl::Status SyncParameters(torch::nn::Module& model, ProcessGroup& group) {
  std::string description;
  ASSIGN_OR_RETURN(const torch::Tensor all,
                   AllGatherHost(group, torch::tensor({ModelFingerprint(model, &description)}, torch::kInt64)));
  for (int r = 0; r < group.size(); ++r) {
    if (all[r].item<int64_t>() != all[0].item<int64_t>()) {
      return absl::FailedPreconditionError(
          "rank " + std::to_string(r) + "'s model has other parameter names or shapes than rank 0's "
          "(this rank: " + description + "...); every rank must run the same config");
    }
  }
  torch::NoGradGuard no_grad;
  std::vector<std::shared_ptr<Work>> work;
  for (auto& p : model.parameters()) work.push_back(group.Broadcast(p.data(), 0, Dispatch::kCaller));
  for (auto& b : model.buffers()) work.push_back(group.Broadcast(b.data(), 0, Dispatch::kCaller));
  for (auto& w : work) RETURN_IF_ERROR(w->Wait());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Strategy>> ApplyStrategy(std::shared_ptr<torch::nn::Module> model,
                                                        ProcessGroup& group,
                                                        const DistOptions& options,
                                                        const AdamWSettings& adamw) {
  RETURN_IF_ERROR(SyncParameters(*model, group));
  std::vector<std::string> names;
  std::vector<torch::Tensor> params = TrainableParams(*model, &names);
  if (params.empty()) return absl::InvalidArgumentError("the model has no trainable parameters");
  if (options.strategy == "ddp") {
    return std::unique_ptr<Strategy>(new Ddp(params, std::move(names), group, options, adamw));
  }
  if (options.strategy == "zero1" || options.strategy == "zero2") {
    const int stage = options.strategy == "zero1" ? 1 : 2;
    return std::unique_ptr<Strategy>(new Zero(stage, params, std::move(names), group, options, adamw));
  }
  if (options.strategy == "zero3") return MakeZero3(model, group, adamw);
  return absl::InvalidArgumentError("unknown dist.strategy '" + options.strategy +
                                    "' (ddp, zero1, zero2 or zero3)");
}

}  // namespace loom::dist

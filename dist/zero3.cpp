// ZeRO-3: parameters, gradients and AdamW state sharded. Each outermost module marked
// as a Unit (core/unit.h) is a unit whose parameters are all-gathered just before its
// body runs, freed after, gathered again for its backward (which recomputes the body, as
// activation checkpointing does) and freed after, with its gradients reduce-scattered to
// the owning shards. Parameters outside the units form a root unit, gathered for the
// step. The shards (AdamW's parameters) are never released, so the state that leaves
// the strategy (slices, checkpoints, averages) is valid whatever the step did.
#include "dist/zero3.h"

#include <unordered_map>
#include <unordered_set>

#include "core/log.h"
#include "core/unit.h"
#include "dist/optimizer_state.h"

namespace loom::dist {
namespace {

using Tensors = std::vector<torch::Tensor>;

class Zero3 : public Strategy {
 public:
  Zero3(std::shared_ptr<torch::nn::Module> model, ProcessGroup& group, const AdamWSettings& adamw)
      : model_(std::move(model)), group_(group), adamw_(adamw) {
    std::unordered_map<const void*, std::string> name_of;
    for (const auto& item : model_->named_parameters()) name_of[item.value().unsafeGetTensorImpl()] = item.key();
    // Units: the outermost marked modules (pre-order, so an outer unit claims its inner
    // ones' parameters first), then the root with every other trainable parameter.
    std::unordered_set<const void*> claimed;
    for (const auto& module : model_->modules(/*include_self=*/true)) {
      loom::Unit* marker = dynamic_cast<loom::Unit*>(module.get());
      if (marker == nullptr) continue;
      Part unit;
      for (auto& p : module->parameters()) {
        if (p.requires_grad() && claimed.insert(p.unsafeGetTensorImpl()).second) unit.params.push_back(p);
      }
      if (unit.params.empty()) continue;  // nested in an earlier unit, or nothing to shard
      unit.marker = marker;
      units_.push_back(std::move(unit));
    }
    Part root;
    for (auto& p : model_->parameters()) {
      if (p.requires_grad() && !claimed.count(p.unsafeGetTensorImpl())) root.params.push_back(p);
    }
    units_.push_back(std::move(root));
    if (units_.size() == 1) {
      log::Info() << "zero3: the model marks no units (core/unit.h); all its parameters are gathered for the "
                     "whole step";
    }

    torch::NoGradGuard no_grad;
    const int64_t world = group.size(), rank = group.rank();
    std::vector<torch::Tensor> shards;
    for (Part& u : units_) {
      for (const auto& p : u.params) {
        u.entries.push_back({name_of[p.unsafeGetTensorImpl()], u.numel, p.sizes().vec()});
        u.numel += p.numel();
      }
      u.padded = std::max<int64_t>(world, (u.numel + world - 1) / world * world);
      const auto options = u.params.empty() ? torch::TensorOptions(torch::kFloat32)
                                            : u.params.front().options().requires_grad(false);
      torch::Tensor flat = torch::zeros({u.padded}, options);
      torch::Tensor decays = adamw.no_decay ? torch::zeros({u.padded}, options) : torch::Tensor();
      for (size_t i = 0; i < u.params.size(); ++i) {
        flat.narrow(0, u.entries[i].offset, u.params[i].numel()).copy_(u.params[i].reshape({-1}));
        if (decays.defined()) {
          decays.narrow(0, u.entries[i].offset, u.params[i].numel())
              .fill_(adamw.no_decay(u.entries[i].name) ? 0.0 : 1.0);
        }
      }
      const int64_t n = u.padded / world;
      u.shard = flat.narrow(0, rank * n, n).clone().requires_grad_(true);
      u.shard_grad = torch::zeros({n}, options);
      u.shard.mutable_grad() = u.shard_grad;
      if (decays.defined()) decay_.emplace_back(u.shard.detach(), decays.narrow(0, rank * n, n).clone());
      shards.push_back(u.shard);
      Release(u);
    }
    optimizer_ = std::make_unique<torch::optim::AdamW>(
        shards, torch::optim::AdamWOptions(adamw.lr)
                    .betas({adamw.beta1, adamw.beta2})
                    .eps(adamw.eps)
                    .weight_decay(adamw.no_decay ? 0.0 : adamw.weight_decay));
    for (size_t i = 0; i + 1 < units_.size(); ++i) {
      units_[i].marker->set_unit_hook(
          [this, i](const Tensors& in, const loom::Unit::Body& body) { return RunUnit(i, in, body); });
    }
  }

  ~Zero3() override {
    for (Part& u : units_) {
      if (u.marker != nullptr) u.marker->set_unit_hook(nullptr);
    }
  }

  std::string name() const override { return "zero3"; }

  void ZeroGrad() override {
    for (Part& u : units_) {
      Release(u);
      u.shard_grad.zero_();
    }
    bodies_.clear();
    Check(Gather(units_.back()));
    for (auto& p : units_.back().params) p.mutable_grad() = torch::Tensor();
  }

  // Gradients are reduce-scattered as each unit's backward finishes, every micro-batch.
  void SetSync(bool) override {}

  absl::Status FinishBackward() override {
    Part& root = units_.back();
    Tensors grads;
    for (auto& p : root.params) grads.push_back(p.grad());
    RETURN_IF_ERROR(ReduceGrads(root, grads));
    for (auto& p : root.params) p.mutable_grad() = torch::Tensor();
    Release(root);
    return absl::OkStatus();
  }

  absl::StatusOr<double> ClipGradNorm(double max_norm) override {
    std::vector<torch::Tensor> grads;
    for (const Part& u : units_) grads.push_back(u.shard_grad);
    return ClipShardedGradNorm(group_, grads, max_norm);
  }

  absl::Status Step(double lr) override {
    for (const DecayMask& d : decay_) d.Apply(lr, adamw_.weight_decay);
    SetLr(*optimizer_, lr);
    optimizer_->step();
    return absl::OkStatus();
  }

  absl::Status GatherFullParameters() override {
    for (Part& u : units_) RETURN_IF_ERROR(Gather(u));
    return absl::OkStatus();
  }

  MemoryStats Memory() const override {
    MemoryStats m;
    for (const Part& u : units_) {
      m.param_bytes += Bytes(u.shard) + Bytes(u.full);
      m.grad_bytes += Bytes(u.shard_grad);
    }
    m.optimizer_bytes = OptimizerBytes(*optimizer_);
    return m;
  }

  std::vector<Slice> ParameterSlices() override {
    std::vector<Slice> out;
    for (Part& u : units_) {
      for (Slice& s : FlatShardSlices(u.entries, ShardBegin(u), u.shard.detach())) out.push_back(std::move(s));
    }
    return out;
  }
  bool parameters_replicated() const override { return false; }

  OptimizerSlices OptimizerState() override {
    OptimizerSlices out;
    for (Part& u : units_) {
      const AdamWSlot slot = GetAdamWState(*optimizer_, u.shard);
      if (!slot.exp_avg.defined()) continue;
      out.step = slot.step;
      for (const auto& [suffix, state] : {std::pair{".exp_avg", slot.exp_avg}, {".exp_avg_sq", slot.exp_avg_sq}}) {
        for (Slice& s : FlatShardSlices(u.entries, ShardBegin(u), state, suffix)) out.slices.push_back(std::move(s));
      }
    }
    return out;
  }

  absl::Status LoadOptimizerState(const RangeReader& read, int64_t step) override {
    if (step == 0) return absl::OkStatus();
    for (Part& u : units_) {
      AdamWSlot slot;
      slot.step = step;
      slot.exp_avg = torch::zeros_like(u.shard_grad);
      slot.exp_avg_sq = torch::zeros_like(u.shard_grad);
      RETURN_IF_ERROR(ReadFlatShard(u.entries, ShardBegin(u), read, ".exp_avg", slot.exp_avg));
      RETURN_IF_ERROR(ReadFlatShard(u.entries, ShardBegin(u), read, ".exp_avg_sq", slot.exp_avg_sq));
      SetAdamWState(*optimizer_, u.shard, slot);
    }
    return absl::OkStatus();
  }

  // `values` follow ParameterSlices(): unit by unit, each unit's pieces in shard order.
  absl::StatusOr<std::map<std::string, torch::Tensor>> GatherOnRoot(const std::vector<torch::Tensor>& values) override {
    std::map<std::string, torch::Tensor> out;
    size_t next = 0;
    for (Part& u : units_) {
      torch::Tensor shard = torch::zeros_like(u.shard_grad);
      for (const Slice& s : FlatShardSlices(u.entries, ShardBegin(u), shard)) {
        if (next >= values.size()) return absl::InternalError("zero3: fewer values than parameter slices");
        torch::Tensor(s.data).copy_(values[next++].reshape({-1}));
      }
      RETURN_IF_ERROR(GatherFlatOnRoot(group_, u.entries, u.padded, shard, &out));
    }
    return out;
  }

  // ---- used by the unit hook and its autograd function ----------------------------
  struct Part {
    loom::Unit* marker = nullptr;  // null for the root
    Tensors params;
    std::vector<FlatEntry> entries;
    int64_t numel = 0;
    int64_t padded = 0;
    torch::Tensor shard;       // this rank's slice of the flat parameters (AdamW's)
    torch::Tensor shard_grad;  // its gradient, accumulated over micro-batches
    torch::Tensor full;        // the gathered flat parameters, while gathered
  };

  Part& unit(size_t i) { return units_[i]; }
  const loom::Unit::Body& body(int64_t id) { return bodies_.at(id); }
  void ForgetBody(int64_t id) { bodies_.erase(id); }

  absl::Status Gather(Part& u) {
    if (u.full.defined()) return absl::OkStatus();
    torch::NoGradGuard no_grad;
    u.full = torch::empty({u.padded}, u.shard.options().requires_grad(false));
    RETURN_IF_ERROR(group_.AllGather(u.full, u.shard.detach(), Dispatch::kCaller)->Wait());
    for (size_t i = 0; i < u.params.size(); ++i) {
      u.params[i].set_data(u.full.narrow(0, u.entries[i].offset, u.entries[i].numel()).view(u.entries[i].shape));
    }
    return absl::OkStatus();
  }

  void Release(Part& u) {
    for (auto& p : u.params) p.set_data(torch::empty({0}, u.shard.options().requires_grad(false)));
    u.full = torch::Tensor();
  }

  // Reduce-scatters a unit's full parameter gradients into its shard gradient.
  absl::Status ReduceGrads(Part& u, const Tensors& grads) {
    torch::NoGradGuard no_grad;
    torch::Tensor flat = torch::zeros({u.padded}, u.shard_grad.options());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) flat.narrow(0, u.entries[i].offset, grads[i].numel()).copy_(grads[i].reshape({-1}));
    }
    torch::Tensor mine = torch::empty_like(u.shard_grad);
    RETURN_IF_ERROR(group_.ReduceScatter(mine, flat, ReduceOp::kAverage, Dispatch::kCaller)->Wait());
    u.shard_grad.add_(mine);
    return absl::OkStatus();
  }

  static void Check(const absl::Status& s) {
    if (!s.ok()) throw std::runtime_error("zero3: " + std::string(s.message()));
  }

 private:
  int64_t ShardBegin(const Part& u) const { return group_.rank() * (u.padded / group_.size()); }

  Tensors RunUnit(size_t index, const Tensors& inputs, const loom::Unit::Body& body);

  std::shared_ptr<torch::nn::Module> model_;
  ProcessGroup& group_;
  AdamWSettings adamw_;
  std::vector<Part> units_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<DecayMask> decay_;
  std::unordered_map<int64_t, loom::Unit::Body> bodies_;
  int64_t next_body_ = 0;
};

// forward: gather, run without a graph, free. backward: gather, recompute with the
// saved generator state, differentiate, reduce-scatter the parameter gradients, free.
struct GatheredUnit : public torch::autograd::Function<GatheredUnit> {
  // `anchor` is the unit's shard (a leaf that requires grad): as an input it makes the
  // outputs part of the graph even when no other input requires grad (the first unit),
  // so backward reaches every unit. Its gradient is accumulated by hand, not returned.
  static Tensors forward(torch::autograd::AutogradContext* ctx, int64_t strategy, int64_t index,
                         int64_t body_id, torch::Tensor anchor, at::TensorList input_list) {
    // A TensorList (not a vector) so autograd sees each input as a graph input.
    const Tensors inputs = input_list.vec();
    auto* self = reinterpret_cast<Zero3*>(strategy);
    Zero3::Part& unit = self->unit(static_cast<size_t>(index));
    ctx->saved_data["strategy"] = strategy;
    ctx->saved_data["unit"] = index;
    ctx->saved_data["body"] = body_id;
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    ctx->save_for_backward(inputs);
    Zero3::Check(self->Gather(unit));
    Tensors outputs = self->body(body_id)(inputs);
    self->Release(unit);
    return outputs;
  }

  static Tensors backward(torch::autograd::AutogradContext* ctx, Tensors grad_outputs) {
    auto* self = reinterpret_cast<Zero3*>(ctx->saved_data["strategy"].toInt());
    Zero3::Part& unit = self->unit(static_cast<size_t>(ctx->saved_data["unit"].toInt()));
    const int64_t body_id = ctx->saved_data["body"].toInt();
    const Tensors saved = ctx->get_saved_variables();
    Tensors inputs;
    for (const auto& x : saved) {
      inputs.push_back(x.defined() ? x.detach().requires_grad_(x.requires_grad()) : x);
    }
    Zero3::Check(self->Gather(unit));
    Tensors outputs;
    {
      // Recompute exactly: the same generator state the forward saw.
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      const at::Tensor now = gen.get_state();
      gen.set_state(ctx->saved_data["rng"].toTensor());
      torch::AutoGradMode grad_mode(true);
      outputs = self->body(body_id)(inputs);
      gen.set_state(now);
    }
    Tensors roots, seeds, targets;
    for (size_t i = 0; i < outputs.size() && i < grad_outputs.size(); ++i) {
      if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
        roots.push_back(outputs[i]);
        seeds.push_back(grad_outputs[i]);
      }
    }
    std::vector<int> input_slot(inputs.size(), -1);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined() && inputs[i].requires_grad()) {
        input_slot[i] = static_cast<int>(targets.size());
        targets.push_back(inputs[i]);
      }
    }
    // Parameters frozen for this backward (another trainable's turn) get no gradient
    // and no reduction; every rank freezes the same ones.
    const size_t first_param = targets.size();
    std::vector<int> param_slot(unit.params.size(), -1);
    for (size_t i = 0; i < unit.params.size(); ++i) {
      if (!unit.params[i].requires_grad()) continue;
      param_slot[i] = static_cast<int>(targets.size());
      targets.push_back(unit.params[i]);
    }
    Tensors grads(targets.size());
    if (!roots.empty() && !targets.empty()) {
      grads = torch::autograd::grad(roots, targets, seeds, /*retain_graph=*/false,
                                    /*create_graph=*/false, /*allow_unused=*/true);
    }
    if (targets.size() > first_param) {
      Tensors param_grads(unit.params.size());
      for (size_t i = 0; i < unit.params.size(); ++i) {
        if (param_slot[i] >= 0) param_grads[i] = grads[param_slot[i]];
      }
      Zero3::Check(self->ReduceGrads(unit, param_grads));
    }
    self->Release(unit);
    self->ForgetBody(body_id);
    Tensors result = {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    for (size_t i = 0; i < inputs.size(); ++i) {
      result.push_back(input_slot[i] >= 0 ? grads[input_slot[i]] : torch::Tensor());
    }
    return result;
  }
};

Tensors Zero3::RunUnit(size_t index, const Tensors& inputs, const loom::Unit::Body& body) {
  Part& u = units_[index];
  if (!torch::GradMode::is_enabled()) {
    Check(Gather(u));
    Tensors out = body(inputs);
    Release(u);
    return out;
  }
  const int64_t id = next_body_++;
  bodies_[id] = body;
  return GatheredUnit::apply(reinterpret_cast<int64_t>(this), static_cast<int64_t>(index), id, u.shard,
                             at::TensorList(inputs));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Strategy>> MakeZero3(std::shared_ptr<torch::nn::Module> model,
                                                    ProcessGroup& group, const AdamWSettings& adamw) {
  return std::unique_ptr<Strategy>(new Zero3(std::move(model), group, adamw));
}

}  // namespace loom::dist

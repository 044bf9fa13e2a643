// ZeRO-3: parameters, gradients and AdamW state sharded. Each block of a BlockHost model
// is a unit whose parameters are all-gathered just before its forward, freed after,
// gathered again for its backward (which recomputes the block, as activation
// checkpointing does) and freed after, with its gradients reduce-scattered to the
// owning shards. Parameters outside the blocks form a root unit, gathered for the step.
#include "dist/zero3.h"

#include <unordered_map>

#include "core/block_host.h"
#include "core/log.h"
#include "dist/optimizer_state.h"

namespace loom::dist {
namespace {

using Tensors = std::vector<torch::Tensor>;

class Zero3 : public Strategy {
 public:
  Zero3(std::shared_ptr<torch::nn::Module> model, ProcessGroup& group, const AdamWSettings& adamw)
      : model_(std::move(model)), group_(group) {
    // Units: one per block, then the root with every other trainable parameter.
    auto* host = dynamic_cast<BlockHost*>(model_.get());
    std::vector<std::shared_ptr<torch::nn::Module>> blocks;
    if (host != nullptr) blocks = host->blocks();
    std::unordered_map<const void*, std::string> name_of;
    for (const auto& item : model_->named_parameters()) name_of[item.value().unsafeGetTensorImpl()] = item.key();
    std::unordered_map<const void*, bool> in_block;
    for (const auto& block : blocks) {
      Unit unit;
      for (auto& p : block->parameters()) {
        if (!p.requires_grad()) continue;
        in_block[p.unsafeGetTensorImpl()] = true;
        unit.params.push_back(p);
      }
      units_.push_back(std::move(unit));
    }
    Unit root;
    for (auto& p : model_->parameters()) {
      if (p.requires_grad() && !in_block.count(p.unsafeGetTensorImpl())) root.params.push_back(p);
    }
    units_.push_back(std::move(root));
    if (host == nullptr) {
      log::Info() << "zero3: the model exposes no blocks (core/block_host.h); all its parameters "
                     "are gathered for the whole step";
    }

    torch::NoGradGuard no_grad;
    const int64_t world = group.size(), rank = group.rank();
    std::vector<torch::Tensor> shards;
    for (Unit& u : units_) {
      for (const auto& p : u.params) {
        u.names.push_back(name_of[p.unsafeGetTensorImpl()]);
        u.shapes.push_back(p.sizes().vec());
        u.offsets.push_back(u.numel);
        u.numel += p.numel();
      }
      u.padded = std::max<int64_t>(world, (u.numel + world - 1) / world * world);
      const auto options = u.params.empty() ? torch::TensorOptions(torch::kFloat32)
                                            : u.params.front().options().requires_grad(false);
      torch::Tensor flat = torch::zeros({u.padded}, options);
      for (size_t i = 0; i < u.params.size(); ++i) {
        flat.narrow(0, u.offsets[i], u.params[i].numel()).copy_(u.params[i].reshape({-1}));
      }
      const int64_t n = u.padded / world;
      u.shard = flat.narrow(0, rank * n, n).clone().requires_grad_(true);
      u.shard_grad = torch::zeros({n}, options);
      u.shard.mutable_grad() = u.shard_grad;
      shards.push_back(u.shard);
      Release(u);
    }
    optimizer_ = std::make_unique<torch::optim::AdamW>(
        shards, torch::optim::AdamWOptions(adamw.lr)
                    .betas({adamw.beta1, adamw.beta2})
                    .eps(adamw.eps)
                    .weight_decay(adamw.weight_decay));
    if (host != nullptr) {
      host->set_block_wrapper([this](size_t block, const Tensors& in, const BlockHost::Run& run) {
        return RunBlock(block, in, run);
      });
    }
  }

  ~Zero3() override {
    if (auto* host = dynamic_cast<BlockHost*>(model_.get())) host->set_block_wrapper(nullptr);
  }

  std::string name() const override { return "zero3"; }

  void ZeroGrad() override {
    for (Unit& u : units_) {
      Release(u);
      u.shard_grad.zero_();
    }
    runs_.clear();
    Check(Gather(units_.back()));
    for (auto& p : units_.back().params) p.mutable_grad() = torch::Tensor();
  }

  // Gradients are reduce-scattered as each block's backward finishes, every micro-batch.
  void SetSync(bool) override {}

  absl::Status FinishBackward() override {
    Unit& root = units_.back();
    Tensors grads;
    for (auto& p : root.params) grads.push_back(p.grad());
    RETURN_IF_ERROR(ReduceGrads(root, grads));
    for (auto& p : root.params) p.mutable_grad() = torch::Tensor();
    Release(root);
    return absl::OkStatus();
  }

  absl::StatusOr<double> ClipGradNorm(double max_norm) override {
    std::vector<torch::Tensor> grads;
    for (const Unit& u : units_) grads.push_back(u.shard_grad);
    return ClipShardedGradNorm(group_, grads, max_norm);
  }

  absl::Status Step(double lr) override {
    SetLr(*optimizer_, lr);
    optimizer_->step();
    return absl::OkStatus();
  }

  absl::Status GatherFullParameters() override {
    for (Unit& u : units_) RETURN_IF_ERROR(Gather(u));
    return absl::OkStatus();
  }

  MemoryStats Memory() const override {
    MemoryStats m;
    for (const Unit& u : units_) {
      m.param_bytes += Bytes(u.shard) + Bytes(u.full);
      m.grad_bytes += Bytes(u.shard_grad);
    }
    m.optimizer_bytes = OptimizerBytes(*optimizer_);
    return m;
  }

  absl::StatusOr<OptimizerState> ExportOptimizer() override {
    OptimizerState out;
    for (Unit& u : units_) {
      RETURN_IF_ERROR(GatherShardState(group_, *optimizer_, u.shard, u.padded, Entries(u), &out.tensors, &out.step));
    }
    return out;
  }

  absl::Status ImportOptimizer(const std::map<std::string, torch::Tensor>& tensors, int64_t step) override {
    if (step == 0) return absl::OkStatus();
    for (Unit& u : units_) {
      RETURN_IF_ERROR(ScatterShardState(group_.rank(), group_.size(), *optimizer_, u.shard, u.padded, Entries(u),
                                        tensors, step));
    }
    return absl::OkStatus();
  }

  // ---- used by the block wrapper and its autograd function ----------------------------
  struct Unit {
    Tensors params;
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> shapes;
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    int64_t padded = 0;
    torch::Tensor shard;       // this rank's slice of the flat parameters (AdamW's)
    torch::Tensor shard_grad;  // its gradient, accumulated over micro-batches
    torch::Tensor full;        // the gathered flat parameters, while gathered
  };

  Unit& unit(size_t i) { return units_[i]; }
  const BlockHost::Run& run(int64_t id) { return runs_.at(id); }
  void ForgetRun(int64_t id) { runs_.erase(id); }

  absl::Status Gather(Unit& u) {
    if (u.full.defined()) return absl::OkStatus();
    torch::NoGradGuard no_grad;
    u.full = torch::empty({u.padded}, u.shard.options().requires_grad(false));
    RETURN_IF_ERROR(group_.AllGather(u.full, u.shard.detach(), Dispatch::kCaller)->Wait());
    for (size_t i = 0; i < u.params.size(); ++i) {
      u.params[i].set_data(u.full.narrow(0, u.offsets[i], ShapeNumel(u.shapes[i])).view(u.shapes[i]));
    }
    return absl::OkStatus();
  }

  void Release(Unit& u) {
    for (auto& p : u.params) p.set_data(torch::empty({0}, u.shard.options().requires_grad(false)));
    u.full = torch::Tensor();
  }

  // Reduce-scatters a unit's full parameter gradients into its shard gradient.
  absl::Status ReduceGrads(Unit& u, const Tensors& grads) {
    torch::NoGradGuard no_grad;
    torch::Tensor flat = torch::zeros({u.padded}, u.shard_grad.options());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) flat.narrow(0, u.offsets[i], grads[i].numel()).copy_(grads[i].reshape({-1}));
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
  static std::vector<FlatEntry> Entries(const Unit& u) {
    std::vector<FlatEntry> entries;
    for (size_t i = 0; i < u.params.size(); ++i) entries.push_back({u.names[i], u.offsets[i], u.shapes[i]});
    return entries;
  }

  static int64_t ShapeNumel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }

  Tensors RunBlock(size_t block, const Tensors& inputs, const BlockHost::Run& run);

  std::shared_ptr<torch::nn::Module> model_;
  ProcessGroup& group_;
  std::vector<Unit> units_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unordered_map<int64_t, BlockHost::Run> runs_;
  int64_t next_run_ = 0;
};

// forward: gather, run without a graph, free. backward: gather, recompute with the
// saved generator state, differentiate, reduce-scatter the parameter gradients, free.
struct GatheredBlock : public torch::autograd::Function<GatheredBlock> {
  // `anchor` is the unit's shard (a leaf that requires grad): as an input it makes the
  // outputs part of the graph even when no other input requires grad (the first block),
  // so backward reaches every block. Its gradient is accumulated by hand, not returned.
  static Tensors forward(torch::autograd::AutogradContext* ctx, int64_t strategy, int64_t block,
                         int64_t run_id, torch::Tensor anchor, at::TensorList input_list) {
    // A TensorList (not a vector) so autograd sees each input as a graph input.
    const Tensors inputs = input_list.vec();
    auto* self = reinterpret_cast<Zero3*>(strategy);
    Zero3::Unit& unit = self->unit(static_cast<size_t>(block));
    ctx->saved_data["strategy"] = strategy;
    ctx->saved_data["block"] = block;
    ctx->saved_data["run"] = run_id;
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    ctx->save_for_backward(inputs);
    Zero3::Check(self->Gather(unit));
    Tensors outputs = self->run(run_id)(inputs);
    self->Release(unit);
    return outputs;
  }

  static Tensors backward(torch::autograd::AutogradContext* ctx, Tensors grad_outputs) {
    auto* self = reinterpret_cast<Zero3*>(ctx->saved_data["strategy"].toInt());
    Zero3::Unit& unit = self->unit(static_cast<size_t>(ctx->saved_data["block"].toInt()));
    const int64_t run_id = ctx->saved_data["run"].toInt();
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
      outputs = self->run(run_id)(inputs);
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
    const size_t first_param = targets.size();
    for (auto& p : unit.params) targets.push_back(p);
    Tensors grads(targets.size());
    if (!roots.empty()) {
      grads = torch::autograd::grad(roots, targets, seeds, /*retain_graph=*/false,
                                    /*create_graph=*/false, /*allow_unused=*/true);
    }
    Zero3::Check(self->ReduceGrads(unit, Tensors(grads.begin() + first_param, grads.end())));
    self->Release(unit);
    self->ForgetRun(run_id);
    Tensors result = {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    for (size_t i = 0; i < inputs.size(); ++i) {
      result.push_back(input_slot[i] >= 0 ? grads[input_slot[i]] : torch::Tensor());
    }
    return result;
  }
};

Tensors Zero3::RunBlock(size_t block, const Tensors& inputs, const BlockHost::Run& run) {
  Unit& u = units_[block];
  if (!torch::GradMode::is_enabled()) {
    Check(Gather(u));
    Tensors out = run(inputs);
    Release(u);
    return out;
  }
  const int64_t id = next_run_++;
  runs_[id] = run;
  return GatheredBlock::apply(reinterpret_cast<int64_t>(this), static_cast<int64_t>(block), id,
                              u.shard, at::TensorList(inputs));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Strategy>> MakeZero3(std::shared_ptr<torch::nn::Module> model,
                                                    ProcessGroup& group, const AdamWSettings& adamw) {
  return std::unique_ptr<Strategy>(new Zero3(std::move(model), group, adamw));
}

}  // namespace loom::dist

// A marker for the blocks of a network: a module that derives from Unit runs its body
// through Unit::Call, so something outside the network can run code around each call,
// as PyTorch's module hooks allow. ZeRO-3 finds the units by walking the module tree and
// gathers a unit's sharded parameters just before its body runs and frees them after;
// activation checkpointing can use the same seam. Without a hook, Call runs the body.
// The network knows nothing of what a hook does. (Header only; for torch-using code.)
//
//   class BlockImpl : public torch::nn::Module, public Unit {
//     torch::Tensor forward(const torch::Tensor& x) {
//       return Call({x}, [this](const Tensors& in) { return Tensors{Body(in[0])}; })[0];
//     }
//   };
#pragma once

#include <torch/torch.h>

#include <functional>
#include <utility>
#include <vector>

namespace loom {

class Unit {
 public:
  using Tensors = std::vector<torch::Tensor>;
  // The body of one call. A hook may run it again during backward, after the forward
  // returned: it must not capture references to locals, and must be deterministic given
  // its inputs and the CPU/CUDA generator state.
  using Body = std::function<Tensors(const Tensors&)>;
  using Hook = std::function<Tensors(const Tensors& inputs, const Body& body)>;

  virtual ~Unit() = default;

  // Installs (or, with nullptr, removes) the hook around this unit's calls.
  void set_unit_hook(Hook hook) { hook_ = std::move(hook); }
  bool has_unit_hook() const { return static_cast<bool>(hook_); }

 protected:
  Tensors Call(const Tensors& inputs, const Body& body) const { return hook_ ? hook_(inputs, body) : body(inputs); }

 private:
  Hook hook_;
};

}  // namespace loom

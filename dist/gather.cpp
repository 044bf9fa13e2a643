// Differentiable all-gather (see gather.h).
#include "dist/gather.h"

#include <cstdint>
#include <string>

#include "dist/process_group.h"

namespace loom::dist {
namespace {

torch::Tensor Gathered(ProcessGroup& group, const torch::Tensor& x) {
  const torch::Tensor input = x.contiguous();
  std::vector<int64_t> shape = input.sizes().vec();
  shape[0] *= group.size();
  torch::Tensor out = torch::empty(shape, input.options());
  const absl::Status s = group.AllGather(out, input, Dispatch::kCaller)->Wait();
  TORCH_CHECK(s.ok(), "all-gather in the loss failed: ", std::string(s.message()));
  return out;
}

class GatherWithGrad : public torch::autograd::Function<GatherWithGrad> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, int64_t group) {
    ctx->saved_data["group"] = group;
    return Gathered(*reinterpret_cast<ProcessGroup*>(group), x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    ProcessGroup& group = *reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    const torch::Tensor grad = grads[0].contiguous();
    std::vector<int64_t> shape = grad.sizes().vec();
    shape[0] /= group.size();
    torch::Tensor out = torch::empty(shape, grad.options());
    const absl::Status s = group.ReduceScatter(out, grad, ReduceOp::kSum, Dispatch::kCaller)->Wait();
    TORCH_CHECK(s.ok(), "reduce-scatter in the loss's backward failed: ", std::string(s.message()));
    return {out, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor AllGatherWithGrad(ProcessGroup* group, const torch::Tensor& x) {
  if (group == nullptr || group->size() == 1) return x;
  return GatherWithGrad::apply(x, static_cast<int64_t>(reinterpret_cast<intptr_t>(group)));
}

torch::Tensor AllGatherLocalGrad(ProcessGroup* group, const torch::Tensor& x) {
  if (group == nullptr || group->size() == 1) return x;
  torch::Tensor all;
  {
    torch::NoGradGuard no_grad;
    all = Gathered(*group, x.detach());
  }
  const int64_t b = x.size(0);
  std::vector<torch::Tensor> blocks = all.split(b, 0);
  blocks[group->rank()] = x;
  return torch::cat(blocks, 0);
}

}  // namespace loom::dist

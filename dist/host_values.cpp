// Collectives on small host values (see process_group.h): moved to the group's device,
// so the same code runs over MPI (CPU) and NCCL (CUDA).
#include "dist/process_group.h"

namespace loom::dist {

absl::StatusOr<torch::Tensor> AllReduceHost(ProcessGroup& group, const torch::Tensor& values, ReduceOp op) {
  torch::Tensor t = values.to(group.device()).contiguous().clone();
  RETURN_IF_ERROR(group.AllReduce(t, op, Dispatch::kCaller)->Wait());
  return t.to(torch::kCPU);
}

absl::StatusOr<torch::Tensor> AllGatherHost(ProcessGroup& group, const torch::Tensor& values) {
  const torch::Tensor in = values.to(group.device()).contiguous();
  torch::Tensor out = torch::empty({group.size() * in.numel()}, in.options());
  RETURN_IF_ERROR(group.AllGather(out, in.reshape({-1}), Dispatch::kCaller)->Wait());
  return out.to(torch::kCPU);
}

absl::StatusOr<torch::Tensor> BroadcastHost(ProcessGroup& group, const torch::Tensor& values, int root) {
  torch::Tensor t = values.to(group.device()).contiguous().clone();
  RETURN_IF_ERROR(group.Broadcast(t, root, Dispatch::kCaller)->Wait());
  return t.to(torch::kCPU);
}

}  // namespace loom::dist

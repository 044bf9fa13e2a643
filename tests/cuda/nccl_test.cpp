// The NCCL backend on a GPU, at world size 1 (NCCL refuses two ranks on one GPU; the
// collectives at several ranks are the MPI backend's tests on the CPU): every collective
// on CUDA tensors of each type the trainer reduces, results in place, a CPU tensor
// refused by name. launch/gpu_check.sh runs it on a GPU machine; where no GPU is found
// every test is skipped with the reason.
#include <gtest/gtest.h>

#include "dist/process_group.h"

namespace loom::dist {
namespace {

#define SKIP_WITHOUT_CUDA()                                                                              \
  if (!torch::cuda::is_available())                                                                      \
  GTEST_SKIP() << "no CUDA device on this machine: the CUDA checks run on a GPU machine (launch/gpu_check.sh)"

// The group of the test (made once: creating one is collective); null when it failed.
ProcessGroup* Nccl() {
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> group =
      CreateProcessGroup({.backend = "auto", .timeout_s = 120}, torch::Device(torch::kCUDA, 0));
  if (!group.ok()) ADD_FAILURE() << group.status();
  return group.ok() ? group->get() : nullptr;
}

TEST(Nccl, AutoPicksNcclForCudaTensors) {
  SKIP_WITHOUT_CUDA();
  ProcessGroup* nccl = Nccl();
  ASSERT_NE(nccl, nullptr);
  EXPECT_EQ(nccl->backend(), "nccl");
  EXPECT_TRUE(nccl->device().is_cuda());
  EXPECT_EQ(nccl->size(), 1);
}

TEST(Nccl, EveryCollectiveInPlaceOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  ProcessGroup* nccl = Nccl();
  ASSERT_NE(nccl, nullptr);
  for (const auto type : {torch::kFloat32, torch::kBFloat16, torch::kFloat16, torch::kFloat64}) {
    const auto on_gpu = torch::TensorOptions().dtype(type).device(torch::kCUDA, 0);
    const torch::Tensor expected = torch::arange(24, torch::TensorOptions().dtype(type));
    torch::Tensor x = torch::arange(24, on_gpu);
    ASSERT_TRUE(nccl->AllReduce(x, ReduceOp::kSum)->Wait().ok());
    ASSERT_TRUE(nccl->AllReduce(x, ReduceOp::kAverage, Dispatch::kCaller)->Wait().ok());
    torch::Tensor gathered = torch::zeros({24}, on_gpu), scattered = torch::zeros({24}, on_gpu);
    ASSERT_TRUE(nccl->AllGather(gathered, x)->Wait().ok());
    ASSERT_TRUE(nccl->ReduceScatter(scattered, x, ReduceOp::kSum)->Wait().ok());
    ASSERT_TRUE(nccl->Broadcast(x, 0)->Wait().ok());
    ASSERT_TRUE(nccl->Barrier().ok());
    // Wait() orders the caller's stream after the collective; the copy to the host follows it.
    EXPECT_TRUE(torch::equal(x.cpu(), expected)) << c10::toString(type);
    EXPECT_TRUE(torch::equal(gathered.cpu(), expected)) << c10::toString(type);
    EXPECT_TRUE(torch::equal(scattered.cpu(), expected)) << c10::toString(type);
  }
}

TEST(Nccl, ACpuTensorIsRefusedByName) {
  SKIP_WITHOUT_CUDA();
  ProcessGroup* nccl = Nccl();
  ASSERT_NE(nccl, nullptr);
  const absl::Status s = nccl->AllReduce(torch::ones({4}), ReduceOp::kSum)->Wait();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("CUDA"), std::string::npos) << s;
}

TEST(Nccl, BackendNcclOnTheCpuIsAClearError) {
  // Runs everywhere: asking for NCCL with CPU tensors names the fix.
  const absl::StatusOr<std::unique_ptr<ProcessGroup>> g =
      CreateProcessGroup({.backend = "nccl", .timeout_s = 10}, torch::Device(torch::kCPU));
  ASSERT_FALSE(g.ok());
  EXPECT_NE(std::string(g.status().message()).find("backend auto or mpi"), std::string::npos) << g.status();
}

}  // namespace
}  // namespace loom::dist

// Collectives over the job's ranks with asynchronous handles: all-reduce (sum,
// average), reduce-scatter, all-gather, broadcast and barrier on contiguous tensors.
// Two backends: MPI (CPU tensors; always available) and NCCL (CUDA tensors; compiled
// wherever NCCL is found). A watchdog ends the whole job, naming the operation, the
// step and the rank, when a collective runs longer than the timeout.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::dist {

enum class ReduceOp { kSum, kAverage };

// Who runs a collective. kBackground starts it at once on the group's communication
// side, so the caller can keep computing (DDP buckets during backward). kCaller leaves
// it queued until the caller's Wait(), which then runs it directly when it is next:
// for collectives waited on right away, with no thread hand-off.
enum class Dispatch { kBackground, kCaller };

// A collective in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Returns once the result may be used: on the CPU the data is in place; with NCCL
  // the caller's current CUDA stream is ordered after the collective (no host sync).
  virtual absl::Status Wait() = 0;
};

class ProcessGroup {
 public:
  ProcessGroup(int rank, int size) : rank_(rank), size_(size) {}
  virtual ~ProcessGroup() = default;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual std::string backend() const = 0;
  // Where its tensors must live: the CPU for MPI, this rank's GPU for NCCL.
  virtual torch::Device device() const { return torch::kCPU; }

  // In place on `tensor`.
  virtual std::shared_ptr<Work> AllReduce(torch::Tensor tensor, ReduceOp op,
                                          Dispatch dispatch = Dispatch::kBackground) = 0;
  // `input` holds size() equal blocks; this rank's `output` gets the reduction of its block.
  virtual std::shared_ptr<Work> ReduceScatter(torch::Tensor output, torch::Tensor input,
                                              ReduceOp op,
                                              Dispatch dispatch = Dispatch::kBackground) = 0;
  // `output` holds size() blocks; block r is rank r's `input`.
  virtual std::shared_ptr<Work> AllGather(torch::Tensor output, torch::Tensor input,
                                          Dispatch dispatch = Dispatch::kBackground) = 0;
  virtual std::shared_ptr<Work> Broadcast(torch::Tensor tensor, int root,
                                          Dispatch dispatch = Dispatch::kBackground) = 0;
  virtual absl::Status Barrier() = 0;

  // The training step, for watchdog messages.
  void SetStep(int64_t step) { step_.store(step); }
  int64_t step() const { return step_.load(); }

 private:
  int rank_;
  int size_;
  std::atomic<int64_t> step_{-1};
};

struct GroupOptions {
  std::string backend = "auto";  // auto | mpi | nccl
  double timeout_s = 600;
};

// The group of all ranks for tensors on `device`: NCCL for CUDA with backend auto or
// nccl, MPI otherwise. Collective: every rank must call it.
absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateProcessGroup(const GroupOptions& options,
                                                                 const torch::Device& device);

// The MPI backend (CPU tensors).
std::unique_ptr<ProcessGroup> CreateMpiGroup(double timeout_s);

// The NCCL backend (CUDA tensors on the current device); error where NCCL is absent.
absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclGroup(double timeout_s);

// Collectives on small host values (losses, flags, step counts, sizes): they travel on
// the group's device and come back to the CPU. Collective, waited on.
absl::StatusOr<torch::Tensor> AllReduceHost(ProcessGroup& group, const torch::Tensor& values, ReduceOp op);
// [size() * n] from every rank's [n].
absl::StatusOr<torch::Tensor> AllGatherHost(ProcessGroup& group, const torch::Tensor& values);
absl::StatusOr<torch::Tensor> BroadcastHost(ProcessGroup& group, const torch::Tensor& values, int root);

// Bytes of a tensor's elements.
inline int64_t Bytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

}  // namespace loom::dist

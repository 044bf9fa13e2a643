// The NCCL backend: collectives on a stream of their own (asynchronous to the host
// whatever the Dispatch), ordered against the caller's
// compute stream with CUDA events (never a host sync), bootstrapped by MPI broadcasting
// the unique id. A watchdog polls the events and aborts the communicator and the job
// when one runs past the timeout. Compiled wherever NCCL is found; runs on GPUs.
#include "dist/process_group.h"

#if LOOM_HAVE_NCCL
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

#include "dist/runtime.h"
#endif

namespace loom::dist {

#if LOOM_HAVE_NCCL
namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<ncclDataType_t> NcclType(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kFloat64: return ncclFloat64;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kUInt8: return ncclUint8;
    default:
      return absl::InvalidArgumentError(std::string("NCCL has no type for ") +
                                        c10::toString(t.scalar_type()));
  }
}

absl::Status Check(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(std::string(what) + " failed: " + ncclGetErrorString(r));
}

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<at::cuda::CUDAEvent> done, absl::Status launched)
      : done_(std::move(done)), launched_(std::move(launched)) {}
  absl::Status Wait() override {
    if (!launched_.ok()) return launched_;
    // The caller's stream waits for the collective; the host does not.
    done_->block(c10::cuda::getCurrentCUDAStream());
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<at::cuda::CUDAEvent> done_;
  absl::Status launched_;
};

class NcclGroup : public ProcessGroup {
 public:
  NcclGroup(int rank, int size, ncclComm_t comm, double timeout_s)
      : ProcessGroup(rank, size),
        comm_(comm),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true)),
        timeout_(timeout_s) {
    watchdog_ = std::thread([this] { Watch(); });
  }
  ~NcclGroup() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    watchdog_.join();
    ncclCommDestroy(comm_);
  }

  std::string backend() const override { return "nccl"; }
  torch::Device device() const override { return torch::Device(torch::kCUDA, c10::cuda::current_device()); }

  std::shared_ptr<Work> AllReduce(torch::Tensor t, ReduceOp op, Dispatch) override {
    return Launch("all_reduce", {t}, [&](cudaStream_t s) -> absl::Status {
      ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(t));
      return Check(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), type, Op(op), comm_, s),
                   "ncclAllReduce");
    });
  }
  std::shared_ptr<Work> ReduceScatter(torch::Tensor out, torch::Tensor in, ReduceOp op,
                                      Dispatch) override {
    return Launch("reduce_scatter", {out, in}, [&](cudaStream_t s) -> absl::Status {
      ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(in));
      return Check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), type, Op(op),
                                     comm_, s),
                   "ncclReduceScatter");
    });
  }
  std::shared_ptr<Work> AllGather(torch::Tensor out, torch::Tensor in, Dispatch) override {
    return Launch("all_gather", {out, in}, [&](cudaStream_t s) -> absl::Status {
      ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(in));
      return Check(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), type, comm_, s),
                   "ncclAllGather");
    });
  }
  std::shared_ptr<Work> Broadcast(torch::Tensor t, int root, Dispatch) override {
    return Launch("broadcast", {t}, [&](cudaStream_t s) -> absl::Status {
      ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(t));
      return Check(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), type, root, comm_, s),
                   "ncclBroadcast");
    });
  }
  absl::Status Barrier() override {
    torch::Tensor one = torch::ones({1}, torch::TensorOptions().device(torch::kCUDA));
    RETURN_IF_ERROR(AllReduce(one, ReduceOp::kSum, Dispatch::kCaller)->Wait());
    c10::cuda::getCurrentCUDAStream().synchronize();
    return absl::OkStatus();
  }

 private:
  static ncclRedOp_t Op(ReduceOp op) { return op == ReduceOp::kSum ? ncclSum : ncclAvg; }

  std::shared_ptr<Work> Launch(const char* name, std::vector<torch::Tensor> tensors,
                               const std::function<absl::Status(cudaStream_t)>& launch) {
    for (const torch::Tensor& t : tensors) {
      if (!t.is_cuda() || !t.is_contiguous()) {
        return std::make_shared<NcclWork>(
            nullptr, absl::InvalidArgumentError(std::string(name) + ": NCCL needs contiguous CUDA tensors"));
      }
    }
    // The collective starts after everything the caller queued on its stream so far.
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream());
    ready.block(stream_);
    absl::Status launched = launch(stream_.stream());
    // The tensors' memory must outlive the collective on its stream.
    for (const torch::Tensor& t : tensors) {
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream_);
    }
    auto done = std::make_shared<at::cuda::CUDAEvent>();
    done->record(stream_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back({name, tensors.empty() ? 0 : Bytes(tensors.back()), Clock::now(), done});
    }
    return std::make_shared<NcclWork>(done, launched);
  }

  void Watch() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      while (!pending_.empty() && pending_.front().done->query()) pending_.pop_front();
      if (pending_.empty()) continue;
      const Pending& p = pending_.front();
      const double waited = std::chrono::duration<double>(Clock::now() - p.started).count();
      if (waited > timeout_) {
        ncclCommAbort(comm_);
        FatalError(std::string("NCCL collective ") + p.name + " (" + std::to_string(p.bytes) +
                       " bytes) at step " + std::to_string(step()) + " has not finished after " +
                       std::to_string(static_cast<int>(waited)) +
                       " s (dist.timeout_s): another rank is dead or stuck; ending the job",
                   1);
      }
    }
  }

  struct Pending {
    const char* name;
    int64_t bytes;
    Clock::time_point started;
    std::shared_ptr<at::cuda::CUDAEvent> done;
  };

  ncclComm_t comm_;
  c10::cuda::CUDAStream stream_;
  double timeout_;
  std::mutex mutex_;
  std::deque<Pending> pending_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclGroup(double timeout_s) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ncclUniqueId id;
  if (rank == 0) RETURN_IF_ERROR(Check(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t comm;
  RETURN_IF_ERROR(Check(ncclCommInitRank(&comm, size, id, rank), "ncclCommInitRank"));
  return std::unique_ptr<ProcessGroup>(new NcclGroup(rank, size, comm, timeout_s));
}

#else

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclGroup(double) {
  return absl::UnimplementedError(
      "this loom was built without NCCL; rebuild where the CUDA toolkit and NCCL are found, "
      "or set dist.backend: mpi");
}

#endif

}  // namespace loom::dist

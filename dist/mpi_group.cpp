// The MPI backend: collectives run in order on one communication thread, so the caller
// (backward, during DDP) keeps computing while MPI moves data; a watchdog thread ends
// the job when one runs past the timeout (see process_group.h).
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "dist/process_group.h"
#include "dist/runtime.h"

namespace loom::dist {
namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<MPI_Datatype> MpiType(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kUInt8: return MPI_UINT8_T;
    default:
      return absl::InvalidArgumentError(std::string("the MPI backend has no type for ") +
                                        c10::toString(t.scalar_type()) +
                                        " tensors (reduce in float32, or use NCCL on GPUs)");
  }
}

absl::Status CheckCpu(const torch::Tensor& t, const char* op) {
  if (!t.defined() || !t.device().is_cpu() || !t.is_contiguous()) {
    return absl::InvalidArgumentError(std::string(op) +
                                      ": the MPI backend needs contiguous CPU tensors");
  }
  return absl::OkStatus();
}

class MpiGroup : public ProcessGroup {
 public:
  MpiGroup(int rank, int size, MPI_Comm comm, double timeout_s)
      : ProcessGroup(rank, size), comm_(comm), timeout_(timeout_s) {
    worker_ = std::thread([this] { Loop(); });
    watchdog_ = std::thread([this] { Watch(); });
  }

  ~MpiGroup() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    caller_wake_.notify_all();
    watchdog_wake_.notify_all();
    worker_.join();
    watchdog_.join();
    int finalized = 0;
    MPI_Finalized(&finalized);  // a group that outlives MPI (a static) just lets go
    if (!finalized) MPI_Comm_free(&comm_);
  }

  std::string backend() const override { return "mpi"; }

  // One queued collective.
  struct Op {
    const char* name;
    int64_t bytes;
    bool caller;  // Dispatch::kCaller: run by the thread that waits for it
    std::function<absl::Status()> run;
    std::promise<absl::Status> done;
  };
  // Runs `op` on the calling thread once it is first in line. Caller-dispatched ops
  // always run here (the communication thread leaves them alone); a background op runs
  // here only if the communication thread has not picked it up yet, so a caller that
  // waits right away pays no thread hand-off.
  void RunHere(const std::shared_ptr<Op>& op) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const auto first = [&] { return running_ == nullptr && !queue_.empty() && queue_.front() == op; };
      if (op->caller) {
        caller_wake_.wait(lock, [&] { return first() || stopping_; });
      }
      if (!first()) return;
      queue_.pop_front();
      running_ = op.get();
      started_ = Clock::now();
    }
    Execute(op);
  }

  std::shared_ptr<Work> AllReduce(torch::Tensor t, ReduceOp op, Dispatch d) override {
    return Enqueue("all_reduce", Bytes(t), d, [this, t, op]() -> absl::Status {
      RETURN_IF_ERROR(CheckCpu(t, "all_reduce"));
      ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(t));
      if (MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), type, MPI_SUM,
                        comm_) != MPI_SUCCESS) {
        return absl::InternalError("MPI_Allreduce failed");
      }
      if (op == ReduceOp::kAverage) t.div_(size());
      return absl::OkStatus();
    });
  }

  std::shared_ptr<Work> ReduceScatter(torch::Tensor out, torch::Tensor in, ReduceOp op,
                                      Dispatch d) override {
    return Enqueue("reduce_scatter", Bytes(in), d, [this, out, in, op]() -> absl::Status {
      RETURN_IF_ERROR(CheckCpu(out, "reduce_scatter"));
      RETURN_IF_ERROR(CheckCpu(in, "reduce_scatter"));
      if (in.numel() != out.numel() * size() || in.scalar_type() != out.scalar_type()) {
        return absl::InvalidArgumentError("reduce_scatter: input must hold world-size blocks of output");
      }
      ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(in));
      if (MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), static_cast<int>(out.numel()),
                                   type, MPI_SUM, comm_) != MPI_SUCCESS) {
        return absl::InternalError("MPI_Reduce_scatter_block failed");
      }
      if (op == ReduceOp::kAverage) out.div_(size());
      return absl::OkStatus();
    });
  }

  std::shared_ptr<Work> AllGather(torch::Tensor out, torch::Tensor in, Dispatch d) override {
    return Enqueue("all_gather", Bytes(out), d, [this, out, in]() -> absl::Status {
      RETURN_IF_ERROR(CheckCpu(out, "all_gather"));
      RETURN_IF_ERROR(CheckCpu(in, "all_gather"));
      if (out.numel() != in.numel() * size() || in.scalar_type() != out.scalar_type()) {
        return absl::InvalidArgumentError("all_gather: output must hold world-size blocks of input");
      }
      ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(in));
      // `input` may already be this rank's block of `output` (ZeRO's shards): in place.
      const bool in_place = in.data_ptr() == static_cast<char*>(out.data_ptr()) +
                                                 Bytes(in) * static_cast<int64_t>(rank());
      if (MPI_Allgather(in_place ? MPI_IN_PLACE : in.data_ptr(), static_cast<int>(in.numel()),
                        type, out.data_ptr(), static_cast<int>(in.numel()), type,
                        comm_) != MPI_SUCCESS) {
        return absl::InternalError("MPI_Allgather failed");
      }
      return absl::OkStatus();
    });
  }

  std::shared_ptr<Work> Broadcast(torch::Tensor t, int root, Dispatch d) override {
    return Enqueue("broadcast", Bytes(t), d, [this, t, root]() -> absl::Status {
      RETURN_IF_ERROR(CheckCpu(t, "broadcast"));
      ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(t));
      if (MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), type, root, comm_) != MPI_SUCCESS) {
        return absl::InternalError("MPI_Bcast failed");
      }
      return absl::OkStatus();
    });
  }

  absl::Status Barrier() override {
    return Enqueue("barrier", 0, Dispatch::kCaller, [this]() -> absl::Status {
             return MPI_Barrier(comm_) == MPI_SUCCESS ? absl::OkStatus()
                                                      : absl::InternalError("MPI_Barrier failed");
           })
        ->Wait();
  }

 private:

  class MpiWork : public Work {
   public:
    MpiWork(MpiGroup* group, std::shared_ptr<Op> op)
        : group_(group), op_(op), done_(op->done.get_future().share()) {}
    // A caller-dispatched op blocks every later op until it runs: run it even if the
    // caller dropped its handle without waiting.
    ~MpiWork() override {
      if (auto op = op_.lock(); op && op->caller) group_->RunHere(op);
    }
    absl::Status Wait() override {
      if (auto op = op_.lock()) group_->RunHere(op);
      return done_.get();
    }

   private:
    MpiGroup* group_;
    std::weak_ptr<Op> op_;
    std::shared_future<absl::Status> done_;
  };

  void Execute(const std::shared_ptr<Op>& op) {
    absl::Status status = op->run();
    bool next_is_callers = false, next_is_background = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = nullptr;
      if (!queue_.empty()) {
        next_is_callers = queue_.front()->caller;
        next_is_background = !next_is_callers;
      }
    }
    // Wake only whoever runs the next op: needless wake-ups cost context switches that
    // dominate small collectives on busy cores.
    if (next_is_callers) caller_wake_.notify_all();
    if (next_is_background) wake_.notify_one();
    op->done.set_value(std::move(status));
  }

  std::shared_ptr<Work> Enqueue(const char* name, int64_t bytes, Dispatch dispatch,
                                std::function<absl::Status()> run) {
    auto op = std::make_shared<Op>();
    op->name = name;
    op->bytes = bytes;
    op->caller = dispatch == Dispatch::kCaller;
    op->run = std::move(run);
    auto work = std::make_shared<MpiWork>(this, op);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(op);
    }
    if (dispatch == Dispatch::kBackground) wake_.notify_one();
    return work;
  }

  // The communication thread: one collective at a time, in the order they were issued
  // (which is the same on every rank), so ranks never mismatch operations.
  void Loop() {
    for (;;) {
      std::shared_ptr<Op> op;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        // One collective at a time, and never one its caller will run.
        wake_.wait(lock, [this] {
          return stopping_ || (!queue_.empty() && running_ == nullptr && !queue_.front()->caller);
        });
        if (queue_.empty() || running_ != nullptr || queue_.front()->caller) {
          if (stopping_) return;
          continue;
        }
        op = queue_.front();
        queue_.pop_front();
        running_ = op.get();
        started_ = Clock::now();
      }
      Execute(op);
    }
  }

  // Ends the job when the running collective exceeds the timeout: a dead or stuck peer
  // must not leave this rank waiting forever.
  void Watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      watchdog_wake_.wait_for(lock, std::chrono::milliseconds(200));
      if (running_ == nullptr) continue;
      const double waited = std::chrono::duration<double>(Clock::now() - started_).count();
      if (waited > timeout_) {
        const std::string message =
            std::string("collective ") + running_->name + " (" + std::to_string(running_->bytes) +
            " bytes) at step " + std::to_string(step()) + " has not finished after " +
            std::to_string(static_cast<int>(waited)) + " s (dist.timeout_s = " +
            std::to_string(static_cast<int>(timeout_)) +
            "): another rank is dead, stuck or running a different program; ending the job";
        lock.unlock();
        FatalError(message, 1);
      }
    }
  }

  MPI_Comm comm_;
  double timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;           // the communication thread
  std::condition_variable caller_wake_;    // callers waiting to run their op
  std::condition_variable watchdog_wake_;  // the watchdog (only to stop it)
  std::deque<std::shared_ptr<Op>> queue_;
  Op* running_ = nullptr;
  Clock::time_point started_;
  bool stopping_ = false;
  std::thread worker_;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<ProcessGroup> CreateMpiGroup(double timeout_s) {
  MPI_Comm comm;
  // A communicator of its own, so loom's collectives never interleave with other MPI
  // traffic of the process.
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  return std::make_unique<MpiGroup>(rank, size, comm, timeout_s);
}

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateProcessGroup(const GroupOptions& options,
                                                                 const torch::Device& device) {
  if (options.timeout_s <= 0) return absl::InvalidArgumentError("dist.timeout_s must be > 0");
  const bool cuda = device.is_cuda();
  if (options.backend == "nccl" || (options.backend == "auto" && cuda)) {
    if (!cuda) {
      return absl::InvalidArgumentError("dist.backend nccl needs CUDA tensors; this run is on " +
                                        device.str() + " (use backend auto or mpi)");
    }
    return CreateNcclGroup(options.timeout_s);
  }
  if (options.backend != "mpi" && options.backend != "auto") {
    return absl::InvalidArgumentError("unknown dist.backend '" + options.backend + "'");
  }
  if (cuda) {
    return absl::InvalidArgumentError("dist.backend mpi reduces CPU tensors; this run is on " +
                                      device.str() + " (use backend auto or nccl)");
  }
  return CreateMpiGroup(options.timeout_s);
}

}  // namespace loom::dist

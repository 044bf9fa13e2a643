// Collective bandwidth and DDP overhead (see comm_bench.h).
#include "bench/comm_bench.h"

#include <mpi.h>
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "dist/process_group.h"
#include "dist/strategy.h"

namespace loom::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Seconds per call of `fn`, the slowest rank's, averaged over enough calls to fill the
// time budget (decided on rank 0 and shared, so every rank runs the same count).
double TimeCollective(const std::function<void()>& fn, double budget) {
  fn();  // warm-up
  MPI_Barrier(MPI_COMM_WORLD);
  auto t0 = Clock::now();
  fn();
  double once = std::chrono::duration<double>(Clock::now() - t0).count();
  MPI_Allreduce(MPI_IN_PLACE, &once, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  const int iters = static_cast<int>(std::clamp(budget / std::max(once, 1e-7), 2.0, 1000.0));
  MPI_Barrier(MPI_COMM_WORLD);
  t0 = Clock::now();
  for (int i = 0; i < iters; ++i) fn();
  double total = std::chrono::duration<double>(Clock::now() - t0).count();
  MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return total / iters;
}

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(int width) {
    for (int i = 0; i < 4; ++i) {
      layers.push_back(register_module("l" + std::to_string(i), torch::nn::Linear(width, width)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& l : layers) x = torch::gelu(l->forward(x));
    return x;
  }
  std::vector<torch::nn::Linear> layers;
};
TORCH_MODULE(Mlp);

// Milliseconds per training step: `strategy` null means no communication at all.
absl::StatusOr<double> StepMs(const CommBenchOptions& o, dist::ProcessGroup& group,
                              const std::string& strategy, bool overlap) {
  torch::manual_seed(0);
  Mlp model(o.model_width);
  torch::Tensor x = torch::randn({o.batch, o.model_width});
  std::unique_ptr<dist::Strategy> s;
  std::unique_ptr<torch::optim::AdamW> local;
  if (strategy.empty()) {
    local = std::make_unique<torch::optim::AdamW>(model->parameters(), torch::optim::AdamWOptions(1e-4));
  } else {
    dist::DistOptions d;
    d.strategy = strategy;
    d.overlap = overlap;
    ASSIGN_OR_RETURN(s, dist::ApplyStrategy(model.ptr(), group, d, {}));
  }
  const auto step = [&]() -> absl::Status {
    if (s) s->ZeroGrad(); else local->zero_grad();
    model->forward(x).pow(2).mean().backward();
    if (s) {
      RETURN_IF_ERROR(s->FinishBackward());
      return s->Step(1e-4);
    }
    local->step();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(step());
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = Clock::now();
  for (int i = 0; i < o.steps; ++i) RETURN_IF_ERROR(step());
  double total = std::chrono::duration<double>(Clock::now() - t0).count();
  MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return 1000.0 * total / o.steps;
}

}  // namespace

absl::StatusOr<std::string> RunCommBench(const CommBenchOptions& o) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::unique_ptr<dist::ProcessGroup> group = dist::CreateMpiGroup(600);
  MPI_Comm raw;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  const double n = world;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 4) {
    const int64_t count = std::max<int64_t>(world, bytes / 4 / world * world);  // floats, divisible
    torch::Tensor full = torch::ones({count});
    torch::Tensor part = torch::ones({count / world});
    const int c = static_cast<int>(count), p = static_cast<int>(count / world);
    struct Op {
      const char* name;
      double bus_factor;
      std::function<void()> loom, loom_async, mpi;
    };
    using dist::Dispatch;
    const std::vector<Op> ops = {
        {"all_reduce", 2 * (n - 1) / n,
         [&] { (void)group->AllReduce(full, dist::ReduceOp::kSum, Dispatch::kCaller)->Wait(); },
         [&] { (void)group->AllReduce(full, dist::ReduceOp::kSum)->Wait(); },
         [&] { MPI_Allreduce(MPI_IN_PLACE, full.data_ptr(), c, MPI_FLOAT, MPI_SUM, raw); }},
        {"reduce_scatter", (n - 1) / n,
         [&] { (void)group->ReduceScatter(part, full, dist::ReduceOp::kSum, Dispatch::kCaller)->Wait(); },
         [&] { (void)group->ReduceScatter(part, full, dist::ReduceOp::kSum)->Wait(); },
         [&] { MPI_Reduce_scatter_block(full.data_ptr(), part.data_ptr(), p, MPI_FLOAT, MPI_SUM, raw); }},
        {"all_gather", (n - 1) / n,
         [&] { (void)group->AllGather(full, part, Dispatch::kCaller)->Wait(); },
         [&] { (void)group->AllGather(full, part)->Wait(); },
         [&] { MPI_Allgather(part.data_ptr(), p, MPI_FLOAT, full.data_ptr(), p, MPI_FLOAT, raw); }},
    };
    for (const Op& op : ops) {
      const double t_mpi = TimeCollective(op.mpi, o.seconds_per_point);
      const double t_loom = TimeCollective(op.loom, o.seconds_per_point);
      const double t_async = TimeCollective(op.loom_async, o.seconds_per_point);
      const double size = static_cast<double>(count) * 4;
      const double loom_bus = size / t_loom / 1e9 * op.bus_factor;
      const double mpi_bus = size / t_mpi / 1e9 * op.bus_factor;
      rows.push_back({{"op", op.name}, {"bytes", static_cast<int64_t>(size)},
                      {"loom_algbw_gbs", size / t_loom / 1e9}, {"mpi_algbw_gbs", size / t_mpi / 1e9},
                      {"loom_busbw_gbs", loom_bus}, {"mpi_busbw_gbs", mpi_bus},
                      {"ratio", t_mpi / t_loom},
                      {"loom_background_busbw_gbs", size / t_async / 1e9 * op.bus_factor},
                      {"background_ratio", t_mpi / t_async}});
      if (rank == 0) {
        char line[200];
        std::snprintf(line, sizeof(line),
                      "%-14s %10lld B  bus GB/s: loom %7.3f  mpi %7.3f  ratio %.3f  "
                      "(background dispatch %.3f)",
                      op.name, static_cast<long long>(size), loom_bus, mpi_bus, t_mpi / t_loom,
                      t_mpi / t_async);
        log::Info() << line;
      }
    }
  }
  MPI_Comm_free(&raw);

  ASSIGN_OR_RETURN(const double local_ms, StepMs(o, *group, "", true));
  ASSIGN_OR_RETURN(const double overlap_ms, StepMs(o, *group, "ddp", true));
  ASSIGN_OR_RETURN(const double serial_ms, StepMs(o, *group, "ddp", false));
  log::Info() << "step without communication " << local_ms << " ms; ddp with overlap "
              << overlap_ms << " ms; ddp without overlap " << serial_ms << " ms";
  nlohmann::ordered_json j;
  j["world"] = world;
  j["collectives"] = rows;
  j["ddp_step_overhead"] = overlap_ms / local_ms - 1.0;
  j["ddp_step_overhead_no_overlap"] = serial_ms / local_ms - 1.0;
  j["step_ms"] = {{"no_communication", local_ms}, {"ddp_overlap", overlap_ms}, {"ddp_no_overlap", serial_ms}};
  j["ddp_model_params"] = 4 * (static_cast<int64_t>(o.model_width) * o.model_width + o.model_width);
  return j.dump();
}

}  // namespace loom::bench

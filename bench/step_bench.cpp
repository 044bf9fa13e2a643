// Training-step throughput against matmul peak (see step_bench.h).
#include "bench/step_bench.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/config/load.h"
#include "core/log.h"
#include "dist/placement.h"
#include "dist/process_group.h"
#include "dist/runtime.h"
#include "train/experiment.h"
#include "train/run_setup.h"
#include "train/trainables.h"

namespace loom::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Waits for the work queued on `device` (a GPU runs asynchronously to the host).
void Synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Float32 FLOP/s of a square matmul big enough to run at the device's pace.
double MatmulFlops(const torch::Device& device) {
  const int64_t n = device.is_cuda() ? 8192 : 1024;
  const auto options = torch::TensorOptions().device(device);
  const torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  torch::Tensor c = torch::mm(a, b);  // warm-up
  Synchronize(device);
  int reps = 0;
  const auto t0 = Clock::now();
  double seconds = 0;
  while (seconds < 1.0) {
    c = torch::mm(a, b);
    Synchronize(device);
    ++reps;
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return 2.0 * n * n * n * reps / seconds;
}

}  // namespace

absl::StatusOr<std::string> RunStepBench(const StepBenchOptions& o) {
  ASSIGN_OR_RETURN(train::ExperimentOptions e, config::LoadFile<train::ExperimentOptions>(o.config, o.overrides));
  const dist::ProcessInfo& proc = dist::Runtime::Info();
  const dist::Placement place = dist::PlaceProcess(proc);
  const int64_t batch = o.batch > 0 ? o.batch : e.data.batch_size;  // global
  if (batch % proc.world != 0) {
    return absl::InvalidArgumentError("batch " + std::to_string(batch) + " does not divide by the world size " +
                                      std::to_string(proc.world) + "; pass another --batch");
  }
  // The device `loom train` would use: this rank's GPU where there is one.
  const torch::Device device = place.device >= 0 ? torch::Device(torch::kCUDA, place.device) : torch::Device(torch::kCPU);
  ASSIGN_OR_RETURN(train::RunSetup setup, train::SetUpRun(e, device));
  stages::Stage& stage = *setup.stage;
  ASSIGN_OR_RETURN(auto group, dist::CreateProcessGroup({e.dist.backend, e.dist.timeout_s}, device));
  ASSIGN_OR_RETURN(std::vector<train::TrainableRun> runs, train::StartTrainables(stage, *group, e.dist));
  ASSIGN_OR_RETURN(auto loader, data::Loader::Create(train::TrainLoaderOptions(e, setup, proc.rank, proc.world, batch),
                                                     {0, 0, static_cast<uint64_t>(e.run.seed)}));
  ASSIGN_OR_RETURN(const data::Batch b, loader->Next());
  // Every trainable trains at every step here (a discriminator before its start too).
  const auto step = [&](int64_t i) -> absl::Status {
    for (size_t k = 0; k < runs.size(); ++k) {
      runs[k].strategy->ZeroGrad();
      train::FreezeAllBut(runs, static_cast<int>(k));
      stage.Loss(b, {0, i, static_cast<int>(k), e.train.precision == "bf16", group.get()}).loss.backward();
      train::FreezeAllBut(runs, -1);
      RETURN_IF_ERROR(runs[k].strategy->FinishBackward());
      RETURN_IF_ERROR(runs[k].strategy->ClipGradNorm(runs[k].spec.optim.clip_grad).status());
      RETURN_IF_ERROR(runs[k].strategy->Step(runs[k].spec.optim.lr));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(step(0));  // warm-up
  Synchronize(device);
  RETURN_IF_ERROR(group->Barrier());
  const auto t0 = Clock::now();
  for (int i = 1; i <= o.steps; ++i) RETURN_IF_ERROR(step(i));
  Synchronize(device);
  RETURN_IF_ERROR(group->Barrier());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count() / o.steps;
  const double flops = 3.0 * stage.ForwardFlops(batch);  // 0 where the stage counts none
  const double achieved = flops / seconds;
  nlohmann::ordered_json j;
  j["config"] = o.config;
  j["batch"] = batch;
  j["ranks"] = proc.world;
  j["threads"] = place.threads;
  j["stage"] = e.stage.kind();
  j["strategy"] = runs[0].strategy->name();
  j["precision"] = e.train.precision;
  j["device"] = device.str();
  j["step_ms"] = seconds * 1000;
  j["samples_per_s"] = batch / seconds;
  j["model_flops_per_step"] = flops;
  j["achieved_gflops"] = achieved / 1e9;
  if (proc.world == 1) {
    // The peak of this process's threads; with several ranks they would contend for it.
    const double peak = MatmulFlops(device);
    j["matmul_gflops"] = peak / 1e9;
    j["share_of_matmul_peak"] = achieved / peak;
    log::Info() << "step " << seconds * 1000 << " ms, " << batch / seconds << " samples/s, " << achieved / 1e9
                << " GFLOP/s of " << peak / 1e9 << " GFLOP/s float32 matmul (" << 100 * achieved / peak << "%) on "
                << (device.is_cuda() ? device.str() : std::to_string(place.threads) + " thread(s)");
  } else {
    log::Info() << "step " << seconds * 1000 << " ms, " << batch / seconds << " samples/s over " << proc.world
                << " ranks x " << place.threads << " thread(s), " << achieved / 1e9 << " GFLOP/s in all";
  }
  return j.dump();
}

}  // namespace loom::bench

// Training-step throughput against matmul peak (see step_bench.h).
#include "bench/step_bench.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/config/load.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "dist/placement.h"
#include "dist/process_group.h"
#include "dist/runtime.h"
#include "dist/strategy.h"
#include "train/dit_stage.h"
#include "train/options.h"
#include "train/schedule.h"

namespace loom::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Float32 FLOP/s of a square matmul big enough to run at the machine's pace.
double MatmulFlops() {
  const int64_t n = 1024;
  const torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::Tensor c = torch::mm(a, b);  // warm-up
  int reps = 0;
  const auto t0 = Clock::now();
  double seconds = 0;
  while (seconds < 1.0) {
    c = torch::mm(a, b);
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
  const int64_t local = batch / proc.world;
  ASSIGN_OR_RETURN(models::DiTConfig dit, models::ResolveDiT(e.model, e.data.image_size, e.data.channels));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion diffusion, diffusion::GaussianDiffusion::Create(e.diffusion));
  torch::manual_seed(0);
  train::DiTStage stage(dit, e.model.text, e.data.max_tokens, diffusion);
  // The trainer's step: the configured strategy (gradient reduction across ranks),
  // global-norm clipping and AdamW.
  ASSIGN_OR_RETURN(auto group, dist::CreateProcessGroup({e.dist.backend, e.dist.timeout_s}, torch::Device(torch::kCPU)));
  ASSIGN_OR_RETURN(auto strategy, dist::ApplyStrategy(stage.ptr(), *group, e.dist, train::AdamWSettingsOf(e.optim)));
  data::Batch b;
  b.pixels = torch::rand({local, dit.channels, dit.image_size, dit.image_size}) * 2 - 1;
  b.tokens = torch::randint(3, e.model.text.vocab, {local, e.data.max_tokens}, torch::kLong);
  b.mask = torch::ones({local, e.data.max_tokens}, torch::kBool);
  b.ids = torch::arange(proc.rank * local, (proc.rank + 1) * local, torch::kLong);
  const auto step = [&](int64_t i) -> absl::Status {
    strategy->ZeroGrad();
    stage->Loss(b, 0, i, e.data.caption_dropout, e.train.precision == "bf16").mean().backward();
    RETURN_IF_ERROR(strategy->FinishBackward());
    RETURN_IF_ERROR(strategy->ClipGradNorm(e.optim.clip_grad).status());
    return strategy->Step(e.optim.lr);
  };
  RETURN_IF_ERROR(step(0));  // warm-up
  RETURN_IF_ERROR(group->Barrier());
  const auto t0 = Clock::now();
  for (int i = 1; i <= o.steps; ++i) RETURN_IF_ERROR(step(i));
  RETURN_IF_ERROR(group->Barrier());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count() / o.steps;
  const double flops = 3.0 * models::DiTForwardFlops(dit, batch, e.data.max_tokens);
  const double achieved = flops / seconds;
  nlohmann::ordered_json j;
  j["config"] = o.config;
  j["batch"] = batch;
  j["ranks"] = proc.world;
  j["threads"] = place.threads;
  j["strategy"] = strategy->name();
  j["precision"] = e.train.precision;
  j["step_ms"] = seconds * 1000;
  j["samples_per_s"] = batch / seconds;
  j["model_flops_per_step"] = flops;
  j["achieved_gflops"] = achieved / 1e9;
  if (proc.world == 1) {
    // The peak of this process's threads; with several ranks they would contend for it.
    const double peak = MatmulFlops();
    j["matmul_gflops"] = peak / 1e9;
    j["share_of_matmul_peak"] = achieved / peak;
    log::Info() << "step " << seconds * 1000 << " ms, " << batch / seconds << " samples/s, " << achieved / 1e9
                << " GFLOP/s of " << peak / 1e9 << " GFLOP/s float32 matmul (" << 100 * achieved / peak << "%) on "
                << place.threads << " thread(s)";
  } else {
    log::Info() << "step " << seconds * 1000 << " ms, " << batch / seconds << " samples/s over " << proc.world
                << " ranks x " << place.threads << " thread(s), " << achieved / 1e9 << " GFLOP/s in all";
  }
  return j.dump();
}

}  // namespace loom::bench

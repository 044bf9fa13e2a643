// Training-step throughput against matmul peak (see step_bench.h).
#include "bench/step_bench.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/config/load.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "dist/placement.h"
#include "dist/runtime.h"
#include "train/dit_stage.h"
#include "train/options.h"

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
  const dist::Placement place = dist::PlaceProcess(dist::Runtime::Info());
  const int64_t batch = o.batch > 0 ? o.batch : e.data.batch_size;
  ASSIGN_OR_RETURN(models::DiTConfig dit, models::ResolveDiT(e.model, e.data.image_size, e.data.channels));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion diffusion, diffusion::GaussianDiffusion::Create(e.diffusion));
  torch::manual_seed(0);
  train::DiTStage stage(dit, e.model.text, e.data.max_tokens, diffusion);
  torch::optim::AdamW optimizer(stage->parameters(), torch::optim::AdamWOptions(e.optim.lr));
  data::Batch b;
  b.pixels = torch::rand({batch, dit.channels, dit.image_size, dit.image_size}) * 2 - 1;
  b.tokens = torch::randint(3, e.model.text.vocab, {batch, e.data.max_tokens}, torch::kLong);
  b.mask = torch::ones({batch, e.data.max_tokens}, torch::kBool);
  b.ids = torch::arange(batch, torch::kLong);
  const auto step = [&](int64_t i) {
    optimizer.zero_grad();
    stage->Loss(b, 0, i, e.data.caption_dropout, e.train.precision == "bf16").mean().backward();
    optimizer.step();
  };
  step(0);  // warm-up
  const auto t0 = Clock::now();
  for (int i = 1; i <= o.steps; ++i) step(i);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count() / o.steps;
  const double flops = 3.0 * models::DiTForwardFlops(dit, batch, e.data.max_tokens);
  const double peak = MatmulFlops();
  const double achieved = flops / seconds;
  log::Info() << "step " << seconds * 1000 << " ms, " << batch / seconds << " samples/s, "
              << achieved / 1e9 << " GFLOP/s of " << peak / 1e9 << " GFLOP/s float32 matmul ("
              << 100 * achieved / peak << "%) on " << place.threads << " thread(s)";
  nlohmann::ordered_json j;
  j["config"] = o.config;
  j["batch"] = batch;
  j["threads"] = place.threads;
  j["precision"] = e.train.precision;
  j["step_ms"] = seconds * 1000;
  j["samples_per_s"] = batch / seconds;
  j["model_flops_per_step"] = flops;
  j["achieved_gflops"] = achieved / 1e9;
  j["matmul_gflops"] = peak / 1e9;
  j["share_of_matmul_peak"] = achieved / peak;
  return j.dump();
}

}  // namespace loom::bench

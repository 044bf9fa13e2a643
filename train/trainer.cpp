// The training loop (see trainer.h): loader -> the stage's loss for each active
// trainable -> backward -> its strategy (gradient reduction, clipping, sharded or
// replicated AdamW) -> moving averages -> progress line and metrics.jsonl -> previews,
// evaluations, checkpoints -> final weights.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "dist/placement.h"
#include "dist/process_group.h"
#include "dist/runtime.h"
#include "train/checkpoint.h"
#include "train/resume.h"
#include "train/run_setup.h"
#include "train/trainables.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string Eta(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  char text[32];
  std::snprintf(text, sizeof(text), "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return text;
}

std::string StepFile(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "step-%07lld.png", static_cast<long long>(step));
  return name;
}

// Fault injection for tests: LOOM_FAULT_NAN_LOSS=STEP:RANK makes that rank's loss (and so
// its gradients) NaN at that step (counted from 1, as in the progress lines), as a
// diverging run would.
bool InjectNan(int64_t step, int rank) {
  static const char* env = std::getenv("LOOM_FAULT_NAN_LOSS");
  if (env == nullptr) return false;
  long long s = -1;
  int r = -1;
  return std::sscanf(env, "%lld:%d", &s, &r) == 2 && s == step && r == rank;
}

// The final weights (moving averages where kept) and buffers, by stage name.
absl::Status WriteFinalWeights(const std::string& path, const std::map<std::string, torch::Tensor>& weights, bool ema) {
  std::vector<NamedTensor> tensors;
  for (const auto& [name, t] : weights) tensors.push_back({name, t});
  return WriteSafetensors(path, tensors, {{"format", "loom-weights"}, {"weights", ema ? "ema" : "raw"}});
}

// One step's figures, the same on every rank after one all-reduce.
struct StepFigures {
  std::vector<double> loss;      // per trainable (NaN when inactive)
  std::vector<double> grad_norm;  // per trainable
  std::vector<std::pair<std::string, double>> metrics;
  int bad_rank = -1;             // the first rank whose loss was not finite
};

}  // namespace

absl::Status Train(const ExperimentOptions& o, const std::string& resolved_yaml) {
  const dist::ProcessInfo& proc = dist::Runtime::Info();
  const dist::Placement place = dist::PlaceProcess(proc);
  const torch::Device device = place.device >= 0 ? torch::Device(torch::kCUDA, place.device) : torch::Device(torch::kCPU);

  // ---- check everything before anything is written ------------------------------------
  const int64_t micro = o.data.batch_size / o.train.grad_accum;  // global micro-batch
  if (micro % proc.world != 0) {
    return absl::InvalidArgumentError(
        "data.batch_size " + std::to_string(o.data.batch_size) + " / train.grad_accum " +
        std::to_string(o.train.grad_accum) + " = " + std::to_string(micro) +
        " samples per micro-batch does not divide by the world size " + std::to_string(proc.world) +
        "; choose a data.batch_size that does");
  }
  ASSIGN_OR_RETURN(RunSetup setup, SetUpRun(o, device));
  stages::Stage& stage = *setup.stage;
  const fs::path run_dir = fs::path(o.run.dir) / o.run.name;
  ASSIGN_OR_RETURN(auto group, dist::CreateProcessGroup({o.dist.backend, o.dist.timeout_s}, device));
  if (fs::exists(run_dir / "config.yaml")) {
    ASSIGN_OR_RETURN(const int64_t newest, AgreedNewestCheckpoint(*group, run_dir.string()));
    if (newest < 0) {
      return absl::AlreadyExistsError(run_dir.string() + " holds an earlier run without a complete checkpoint; "
                                      "choose another run.name or remove the directory");
    }
  }
  ASSIGN_OR_RETURN(std::vector<TrainableRun> runs, StartTrainables(stage, *group, o.dist));
  ASSIGN_OR_RETURN(std::optional<CheckpointState> resume,
                   Resume(*group, run_dir.string(), stage, runs, resolved_yaml, setup.dependency_records));
  const int64_t start_step = resume ? resume->step : 0;
  int64_t skipped_steps = resume ? resume->skipped_steps : 0;
  const auto weights_path = (run_dir / "model.safetensors").string();
  if (resume && start_step >= o.train.steps) {
    log::Info() << run_dir.string() << " finished at step " << start_step << "; raise train.steps to train further";
    // A crash between the last checkpoint and the final weights: write them now.
    ASSIGN_OR_RETURN(auto weights, GatherWeights(stage, runs, /*ema=*/true));
    if (proc.rank == 0 && !fs::exists(weights_path)) RETURN_IF_ERROR(WriteFinalWeights(weights_path, weights, runs[0].ema != nullptr));
    return group->Barrier();
  }
  const data::LoaderState start_state = resume ? resume->loader : data::LoaderState{0, 0, static_cast<uint64_t>(o.run.seed)};
  ASSIGN_OR_RETURN(auto loader, data::Loader::Create(TrainLoaderOptions(o, setup, proc.rank, proc.world, micro), start_state));
  stages::PreviewData preview;
  if (proc.rank == 0 && (o.train.sample_every > 0 || o.train.eval_every > 0)) {
    ASSIGN_OR_RETURN(preview, LoadPreviewData(o, setup));
  }
  if (resume) log::Info() << "resuming from step " << start_step << " (saved at world " << resume->world << ")";

  int64_t params = 0;
  for (const auto& p : stage.parameters()) params += p.numel();
  if (proc.rank == 0) {
    fs::create_directories(run_dir / "samples");
    RETURN_IF_ERROR(WriteFileAtomic((run_dir / "config.yaml").string(), resolved_yaml));  // current config
    log::SetFile((run_dir / "log.txt").string());
  }
  std::string trainables;
  for (const TrainableRun& r : runs) trainables += (trainables.empty() ? "" : ", ") + r.spec.name + " (" + r.strategy->name() + ")";
  log::Info() << "run " << run_dir.string() << ": " << o.stage.kind() << " stage, " << params << " parameters in "
              << trainables << "; " << proc.world << " rank(s) x " << place.threads << " thread(s) on " << device.str()
              << "; global batch " << o.data.batch_size << " (" << o.train.grad_accum << " micro-batches)";
  std::ofstream metrics;
  if (proc.rank == 0) metrics.open(run_dir / "metrics.jsonl", std::ios::app);

  // ---- the loop ---------------------------------------------------------------------------
  const auto started = Clock::now();
  auto window = Clock::now();
  int64_t window_samples = 0;
  constexpr int kMaxSkippedInARow = 10;
  int skipped_in_a_row = 0;
  const size_t K = runs.size();
  // The moving averages as a fresh copy of the stage on rank 0 (collective).
  const auto averaged = [&]() -> absl::StatusOr<std::shared_ptr<stages::Stage>> {
    ASSIGN_OR_RETURN(auto weights, GatherWeights(stage, runs, /*ema=*/true));
    if (proc.rank != 0) return std::shared_ptr<stages::Stage>();
    return CopyStage(setup, weights, device);
  };
  for (int64_t step = start_step; step < o.train.steps; ++step) {
    group->SetStep(step);
    std::vector<int> active;
    for (size_t k = 0; k < K; ++k) {
      if (runs[k].spec.Active(step)) active.push_back(static_cast<int>(k));
    }
    for (int k : active) runs[k].strategy->ZeroGrad();
    std::vector<double> loss_sum(K, 0.0);
    std::vector<std::pair<std::string, double>> metric_sum;
    for (int micro_step = 0; micro_step < o.train.grad_accum; ++micro_step) {
      ASSIGN_OR_RETURN(data::Batch batch, loader->Next());
      for (int k : active) {
        FreezeAllBut(runs, k);
        runs[k].strategy->SetSync(micro_step == o.train.grad_accum - 1);
        stages::LossResult r = stage.Loss(batch, {static_cast<uint64_t>(o.run.seed), step, k, o.train.precision == "bf16"});
        torch::Tensor loss = r.loss / o.train.grad_accum;
        if (k == active.front() && InjectNan(step + 1, proc.rank)) loss = loss * std::numeric_limits<double>::quiet_NaN();
        loss.backward();
        loss_sum[k] += loss.item<double>();
        for (size_t m = 0; m < r.metrics.size(); ++m) {
          const double v = r.metrics[m].second.item<double>() / o.train.grad_accum;
          if (micro_step == 0) {
            metric_sum.push_back({r.metrics[m].first, v});
          } else {
            metric_sum[metric_sum.size() - r.metrics.size() + m].second += v;
          }
        }
      }
      FreezeAllBut(runs, -1);
    }
    for (int k : active) RETURN_IF_ERROR(runs[k].strategy->FinishBackward());
    // Losses and metrics averaged over ranks (the same numbers on every rank), and which
    // ranks saw a non-finite loss, in one collective.
    const size_t A = active.size(), M = metric_sum.size();
    torch::Tensor global = torch::zeros({static_cast<int64_t>(A + M) + proc.world}, torch::kFloat64);
    bool finite = true;
    for (size_t a = 0; a < A; ++a) {
      global[a] = loss_sum[active[a]] / proc.world;
      finite = finite && std::isfinite(loss_sum[active[a]]);
    }
    for (size_t m = 0; m < M; ++m) global[A + m] = metric_sum[m].second / proc.world;
    global[A + M + proc.rank] = finite ? 0.0 : 1.0;
    RETURN_IF_ERROR(group->AllReduce(global, dist::ReduceOp::kSum, dist::Dispatch::kCaller)->Wait());
    StepFigures f;
    f.loss.assign(K, std::numeric_limits<double>::quiet_NaN());
    f.grad_norm.assign(K, std::numeric_limits<double>::quiet_NaN());
    for (size_t a = 0; a < A; ++a) f.loss[active[a]] = global[a].item<double>();
    for (size_t m = 0; m < M; ++m) f.metrics.push_back({metric_sum[m].first, global[A + m].item<double>()});
    for (int r = 0; r < proc.world && f.bad_rank < 0; ++r) {
      if (global[A + M + r].item<double>() != 0) f.bad_rank = r;
    }
    bool grads_finite = true;
    if (f.bad_rank < 0) {
      for (int k : active) {
        ASSIGN_OR_RETURN(f.grad_norm[k], runs[k].strategy->ClipGradNorm(runs[k].spec.optim.clip_grad));
        grads_finite = grads_finite && std::isfinite(f.grad_norm[k]);
      }
    }
    if (f.bad_rank >= 0 || !grads_finite) {
      const std::string what = f.bad_rank >= 0 ? "the loss is not finite on rank " + std::to_string(f.bad_rank)
                                               : "the gradient norm is not finite";
      if (o.train.on_nan == "stop") {
        return absl::FailedPreconditionError("step " + std::to_string(step + 1) + ": " + what +
                                             "; lower optim.lr, or set train.on_nan: skip to skip such steps");
      }
      ++skipped_in_a_row;
      ++skipped_steps;
      log::Warning() << "step " << step + 1 << ": " << what << "; step skipped (train.on_nan = skip)";
      if (skipped_in_a_row > kMaxSkippedInARow) {
        return absl::FailedPreconditionError("step " + std::to_string(step + 1) + ": " +
                                             std::to_string(skipped_in_a_row) +
                                             " steps in a row had non-finite losses; the run has diverged "
                                             "(lower optim.lr and resume from an earlier checkpoint)");
      }
    } else {
      skipped_in_a_row = 0;
      for (int k : active) {
        RETURN_IF_ERROR(runs[k].strategy->Step(runs[k].LearningRate(step, o.train.steps)));
        if (runs[k].ema) runs[k].ema->Update();
        ++runs[k].steps;
      }
      stage.AfterStep(step);
    }
    window_samples += o.data.batch_size;

    const bool last = step + 1 == o.train.steps;
    if ((step + 1) % o.train.log_every == 0 || last) {
      const double seconds = std::chrono::duration<double>(Clock::now() - window).count();
      const double rate = window_samples / std::max(seconds, 1e-9);
      const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
      const double eta = elapsed / (step + 1 - start_step) * (o.train.steps - step - 1);
      char line[256];
      const double lr0 = runs[0].LearningRate(step, o.train.steps);
      std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.5f  lr %.3g  grad %.3f",
                    static_cast<long long>(step + 1), static_cast<long long>(o.train.steps), f.loss[0], lr0,
                    f.grad_norm[0]);
      std::string text = line;
      nlohmann::ordered_json row = {{"step", step + 1}, {"loss", f.loss[0]}, {"lr", lr0}, {"grad_norm", f.grad_norm[0]}};
      for (size_t k = 1; k < K; ++k) {
        if (!runs[k].spec.Active(step)) continue;
        const std::string& name = runs[k].spec.name;
        std::snprintf(line, sizeof(line), "  %s loss %.5f  grad %.3f", name.c_str(), f.loss[k], f.grad_norm[k]);
        text += line;
        row[name + ".loss"] = f.loss[k];
        row[name + ".lr"] = runs[k].LearningRate(step, o.train.steps);
        row[name + ".grad_norm"] = f.grad_norm[k];
      }
      for (const auto& [name, value] : f.metrics) {
        std::snprintf(line, sizeof(line), "  %s %.4g", name.c_str(), value);
        text += line;
        row[name] = value;
      }
      std::snprintf(line, sizeof(line), "  %.1f samples/s  eta %s", rate, Eta(eta).c_str());
      log::Info() << text << line;
      row["samples_per_s"] = rate;
      row["elapsed_s"] = elapsed;
      row["skipped_steps"] = skipped_steps;
      if (metrics.is_open()) {
        metrics << row.dump() << "\n";
        metrics.flush();
      }
      window = Clock::now();
      window_samples = 0;
    }
    if ((o.train.checkpoint_every > 0 && (step + 1) % o.train.checkpoint_every == 0) || last) {
      CheckpointState state;
      state.step = step + 1;
      state.loader = loader->state();
      state.world = proc.world;
      state.trainables = Records(runs);
      state.skipped_steps = skipped_steps;
      state.dependencies = setup.dependency_records;
      ASSIGN_OR_RETURN(const std::vector<int64_t> bytes,
                       SaveCheckpoint(*group, run_dir.string(), state, CheckpointSlices(stage, runs, proc.rank),
                                      resolved_yaml, stage.Assets(), o.train.keep_checkpoints));
      std::string per_rank;
      for (int64_t b : bytes) per_rank += (per_rank.empty() ? "" : ", ") + std::to_string(b);
      log::Info() << "checkpoint: " << (run_dir / "checkpoints").string() << " step " << step + 1
                  << " (bytes written per rank: " << per_rank << ")";
    }
    const bool preview_now = o.train.sample_every > 0 && ((step + 1) % o.train.sample_every == 0 || last);
    const bool eval_now = o.train.eval_every > 0 && ((step + 1) % o.train.eval_every == 0 || last);
    if (preview_now || eval_now) {
      // On rank 0 alone once gathered: the other ranks wait in the next step's collectives.
      ASSIGN_OR_RETURN(std::shared_ptr<stages::Stage> copy, averaged());
      if (proc.rank == 0 && preview_now) {
        const std::string png = (run_dir / "samples" / StepFile(step + 1)).string();
        RETURN_IF_ERROR(copy->Preview(preview, png));
        log::Info() << "preview: " << png;
      }
      if (proc.rank == 0 && eval_now) {
        ASSIGN_OR_RETURN(nlohmann::ordered_json result, copy->Evaluate(preview));
        log::Info() << "eval step " << step + 1 << ": " << result.dump();
        if (metrics.is_open()) {
          nlohmann::ordered_json row = {{"step", step + 1}, {"loss", f.loss[0]}};
          for (const auto& item : result.items()) row[item.key()] = item.value();
          metrics << row.dump() << "\n";
          metrics.flush();
        }
      }
    }
  }

  // ---- final weights (moving averages where kept) ----------------------------------------
  ASSIGN_OR_RETURN(auto weights, GatherWeights(stage, runs, /*ema=*/true));
  if (proc.rank == 0) {
    RETURN_IF_ERROR(WriteFinalWeights(weights_path, weights, runs[0].ema != nullptr));
    log::Info() << "wrote " << weights_path;
  }
  return group->Barrier();
}

}  // namespace loom::train

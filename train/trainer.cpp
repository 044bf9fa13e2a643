// The training loop (see trainer.h): loader -> stage loss -> backward -> strategy
// (gradient reduction, clipping, sharded or replicated AdamW) -> EMA -> progress line
// and metrics.jsonl -> sample grids -> final weights.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/image_io.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "data/manifest.h"
#include "data/tokenizer.h"
#include "dist/placement.h"
#include "dist/process_group.h"
#include "dist/runtime.h"
#include "dist/strategy.h"
#include "train/checkpoint.h"
#include "train/dit_stage.h"
#include "train/prompt_eval.h"
#include "train/sample_grid.h"
#include "train/schedule.h"

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

// The prompts of the sample grids: one per label name ("a photo of a sneaker"), else a
// few of the training captions.
std::vector<std::string> GridPrompts(const data::Manifest& m, const data::Batch& first) {
  std::vector<std::string> prompts;
  for (const std::string& name : m.label_names) prompts.push_back(RenderTemplate("a photo of {a_class}", name));
  for (size_t i = 0; prompts.empty() && i < first.captions.size() && i < 8; ++i) prompts.push_back(first.captions[i]);
  return prompts;
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
  if (o.data.train.empty()) return absl::InvalidArgumentError("data.train is empty: name a dataset directory");
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(o.data.train));
  if (manifest.spec.modality != data::Modality::kImage) {
    return absl::InvalidArgumentError(o.data.train + " holds video; the DiT image stage trains on images");
  }
  const std::string tokenizer_path = o.data.tokenizer.empty() ? o.data.train + "/tokenizer.model" : o.data.tokenizer;
  ASSIGN_OR_RETURN(auto tokenizer, data::Tokenizer::Load(tokenizer_path));
  if (tokenizer->vocab_size() > o.model.text.vocab) {
    return absl::InvalidArgumentError("the tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                                      " tokens but model.text.vocab is " + std::to_string(o.model.text.vocab) +
                                      "; raise model.text.vocab");
  }
  ASSIGN_OR_RETURN(models::DiTConfig dit_config, models::ResolveDiT(o.model, o.data.image_size, manifest.spec.channels));
  std::optional<eval::Judge> judge;
  if (o.eval.every > 0) {
    ASSIGN_OR_RETURN(judge, eval::Judge::Load(o.eval.judge));
    RETURN_IF_ERROR(CheckJudgeFits(*judge, dit_config.image_size, dit_config.channels, o.data.fit));
  }
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion diffusion, diffusion::GaussianDiffusion::Create(o.diffusion));
  const fs::path run_dir = fs::path(o.run.dir) / o.run.name;
  std::optional<LoadedCheckpoint> resume;
  if (fs::exists(run_dir / "config.yaml")) {
    ASSIGN_OR_RETURN(resume, LoadLatestCheckpoint(run_dir.string()));
    if (!resume) {
      return absl::AlreadyExistsError(run_dir.string() + " holds an earlier run without a complete checkpoint; "
                                      "choose another run.name or remove the directory");
    }
    if (resume->step >= o.train.steps) {
      log::Info() << run_dir.string() << " finished at step " << resume->step
                  << "; raise train.steps to train further";
      // A crash between the last checkpoint and the final weights: write them now.
      if (proc.rank == 0 && !fs::exists(run_dir / "model.safetensors")) {
        const auto& weights = resume->ema.empty() ? resume->model : resume->ema;
        std::vector<NamedTensor> tensors;
        for (const auto& [name, t] : weights) tensors.push_back({name, t});
        RETURN_IF_ERROR(WriteSafetensors((run_dir / "model.safetensors").string(), tensors,
                                         {{"format", "loom-weights"}, {"weights", resume->ema.empty() ? "raw" : "ema"}}));
      }
      return absl::OkStatus();
    }
  }
  const int64_t start_step = resume ? resume->step : 0;
  const data::LoaderState start_state =
      resume ? resume->loader : data::LoaderState{0, 0, static_cast<uint64_t>(o.run.seed)};

  data::LoaderOptions lo;
  lo.dir = o.data.train;
  lo.batch = micro;
  lo.rank = proc.rank;
  lo.world = proc.world;
  lo.workers = o.data.workers;
  lo.prefetch = o.data.prefetch;
  lo.image_size = o.data.image_size;
  lo.channels = o.data.channels;
  lo.fit = o.data.fit;
  lo.flip = o.data.flip;
  lo.tokenizer = tokenizer;
  lo.max_tokens = o.data.max_tokens;
  lo.skip_bad = o.data.on_error == "skip";
  lo.max_skipped = o.data.max_skipped;
  ASSIGN_OR_RETURN(auto loader, data::Loader::Create(lo, start_state));

  // ---- model, strategy -------------------------------------------------------------------
  torch::manual_seed(static_cast<uint64_t>(o.run.seed));  // the same init everywhere (rank 0's wins anyway)
  DiTStage stage(dit_config, o.model.text, o.data.max_tokens, diffusion);
  if (resume) {
    torch::NoGradGuard no_grad;
    for (auto& item : stage->named_parameters()) {
      const auto it = resume->model.find(item.key());
      if (it == resume->model.end() || it->second.sizes() != item.value().sizes()) {
        return absl::InvalidArgumentError(resume->dir + " holds another model (parameter '" + item.key() +
                                          "' is missing or has another shape); it cannot resume this config");
      }
      item.value().copy_(it->second);
    }
    if (resume->model.size() != stage->named_parameters().size()) {
      return absl::InvalidArgumentError(resume->dir + " holds another model (its parameter count differs)");
    }
  }
  stage->to(device);
  ASSIGN_OR_RETURN(auto group, dist::CreateProcessGroup({o.dist.backend, o.dist.timeout_s}, device));
  ASSIGN_OR_RETURN(auto strategy, dist::ApplyStrategy(stage.ptr(), *group, o.dist, AdamWSettingsOf(o.optim)));
  RETURN_IF_ERROR(strategy->GatherFullParameters());
  std::unique_ptr<Ema> ema = o.train.ema > 0 ? std::make_unique<Ema>(*stage, o.train.ema) : nullptr;
  if (resume) {
    RETURN_IF_ERROR(strategy->ImportOptimizer(resume->optimizer, resume->adam_step));
    if (ema && !resume->ema.empty() && !ema->Load(resume->ema, start_step)) {
      return absl::InvalidArgumentError(resume->dir + ": its EMA weights do not fit this model");
    }
    log::Info() << "resuming from " << resume->dir << " (step " << start_step << ", saved at world "
                << resume->world << " with " << resume->strategy << ")";
  }

  int64_t params = 0;
  for (const auto& p : stage->parameters()) params += p.numel();
  if (proc.rank == 0) {
    fs::create_directories(run_dir / "samples");
    RETURN_IF_ERROR(WriteFileAtomic((run_dir / "config.yaml").string(), resolved_yaml));  // current config
    log::SetFile((run_dir / "log.txt").string());
  }
  log::Info() << "run " << run_dir.string() << ": DiT " << dit_config.width << "x" << dit_config.depth << " patch "
              << dit_config.patch << " + text " << o.model.text.width << "x" << o.model.text.depth << ", "
              << params << " parameters; " << proc.world << " rank(s) x " << place.threads << " thread(s) on "
              << device.str() << "; strategy " << strategy->name() << "; global batch " << o.data.batch_size
              << " (" << o.train.grad_accum << " micro-batches)";
  std::ofstream metrics;
  if (proc.rank == 0) metrics.open(run_dir / "metrics.jsonl", std::ios::app);

  // ---- the loop ---------------------------------------------------------------------------
  const auto started = Clock::now();
  auto window = Clock::now();
  int64_t window_samples = 0;
  std::vector<std::string> prompts;
  constexpr int kMaxSkippedInARow = 10;
  int skipped_in_a_row = 0;
  int64_t skipped_steps = 0;
  // A copy of the model holding the EMA weights, for samples and evaluation (training
  // is not disturbed).
  const auto averaged = [&]() {
    DiTStage copy(dit_config, o.model.text, o.data.max_tokens, diffusion);
    copy->to(device);
    {
      torch::NoGradGuard no_grad;
      const auto src = stage->parameters();
      const auto dst = copy->parameters();
      for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    }
    if (ema) ema->CopyTo(*copy);
    copy->eval();
    return copy;
  };
  for (int64_t step = start_step; step < o.train.steps; ++step) {
    group->SetStep(step);
    strategy->ZeroGrad();
    double loss_sum = 0;
    for (int k = 0; k < o.train.grad_accum; ++k) {
      ASSIGN_OR_RETURN(data::Batch batch, loader->Next());
      if (prompts.empty()) prompts = GridPrompts(manifest, batch);
      strategy->SetSync(k == o.train.grad_accum - 1);
      const torch::Tensor losses = stage->Loss(batch, static_cast<uint64_t>(o.run.seed), step, o.data.caption_dropout,
                                               o.train.precision == "bf16");
      torch::Tensor loss = losses.mean() / o.train.grad_accum;
      if (InjectNan(step + 1, proc.rank)) loss = loss * std::numeric_limits<double>::quiet_NaN();
      loss.backward();
      loss_sum += loss.item<double>();
    }
    RETURN_IF_ERROR(strategy->FinishBackward());
    // The loss averaged over ranks (the same number on every rank), and which ranks saw a
    // non-finite loss, in one collective.
    torch::Tensor global = torch::zeros({1 + proc.world}, torch::kFloat64);
    global[0] = loss_sum / proc.world;
    global[1 + proc.rank] = std::isfinite(loss_sum) ? 0.0 : 1.0;
    RETURN_IF_ERROR(group->AllReduce(global, dist::ReduceOp::kSum, dist::Dispatch::kCaller)->Wait());
    const double step_loss = global[0].item<double>();
    int bad_rank = -1;
    for (int r = 0; r < proc.world && bad_rank < 0; ++r) {
      if (global[1 + r].item<double>() != 0) bad_rank = r;
    }
    double grad_norm = std::numeric_limits<double>::quiet_NaN();
    if (bad_rank < 0) {
      ASSIGN_OR_RETURN(grad_norm, strategy->ClipGradNorm(o.optim.clip_grad));
    }
    const double lr = LearningRate(o.optim, step, o.train.steps);
    if (bad_rank >= 0 || !std::isfinite(grad_norm)) {
      const std::string what = bad_rank >= 0 ? "the loss is not finite on rank " + std::to_string(bad_rank)
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
      RETURN_IF_ERROR(strategy->Step(lr));
      RETURN_IF_ERROR(strategy->GatherFullParameters());
      if (ema) ema->Update(*stage);
    }
    window_samples += o.data.batch_size;

    const bool last = step + 1 == o.train.steps;
    if ((step + 1) % o.train.log_every == 0 || last) {
      const double seconds = std::chrono::duration<double>(Clock::now() - window).count();
      const double rate = window_samples / std::max(seconds, 1e-9);
      const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
      const double eta = elapsed / (step + 1 - start_step) * (o.train.steps - step - 1);
      char line[256];
      std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.5f  lr %.3g  grad %.3f  %.1f samples/s  eta %s",
                    static_cast<long long>(step + 1), static_cast<long long>(o.train.steps), step_loss, lr,
                    grad_norm, rate, Eta(eta).c_str());
      log::Info() << line;
      if (metrics.is_open()) {
        metrics << nlohmann::json({{"step", step + 1}, {"loss", step_loss}, {"lr", lr}, {"grad_norm", grad_norm},
                                   {"samples_per_s", rate}, {"elapsed_s", elapsed},
                                   {"skipped_steps", skipped_steps}})
                       .dump()
                << "\n";
        metrics.flush();
      }
      window = Clock::now();
      window_samples = 0;
    }
    if ((o.train.checkpoint_every > 0 && (step + 1) % o.train.checkpoint_every == 0) || last) {
      // Collective (ZeRO shards are gathered); rank 0 writes.
      ASSIGN_OR_RETURN(dist::Strategy::OptimizerState opt, strategy->ExportOptimizer());
      if (proc.rank == 0) {
        CheckpointContents c;
        c.step = step + 1;
        c.loader = loader->state();
        c.world = proc.world;
        c.strategy = strategy->name();
        c.adam_step = opt.step;
        for (const auto& item : stage->named_parameters()) c.model.push_back({item.key(), item.value()});
        if (ema) {
          for (size_t i = 0; i < ema->names().size(); ++i) c.ema.push_back({ema->names()[i], ema->shadow()[i]});
        }
        for (auto& [name, t] : opt.tensors) c.optimizer.push_back({name, t});
        c.config_yaml = resolved_yaml;
        c.tokenizer = tokenizer->serialized();
        RETURN_IF_ERROR(SaveCheckpoint(run_dir.string(), c, o.train.keep_checkpoints));
        log::Info() << "checkpoint: " << (run_dir / "checkpoints").string() << " step " << step + 1;
      }
    }
    if (proc.rank == 0 && o.train.sample_every > 0 && ((step + 1) % o.train.sample_every == 0 || last)) {
      DiTStage copy = averaged();
      const int per_prompt = 4;
      const int64_t n = static_cast<int64_t>(prompts.size()) * per_prompt;
      torch::Tensor tokens = torch::empty({n, o.data.max_tokens}, torch::kLong);
      torch::Tensor mask = torch::empty({n, o.data.max_tokens}, torch::kBool);
      for (int64_t i = 0; i < n; ++i) {
        tokenizer->Encode(prompts[i % prompts.size()], o.data.max_tokens, tokens[i].data_ptr<int64_t>(),
                          mask[i].data_ptr<bool>());
      }
      const torch::Tensor images = copy->Sample(tokens, mask, /*cfg=*/4.0, /*steps=*/50, static_cast<uint64_t>(o.run.seed));
      char name[64];
      std::snprintf(name, sizeof(name), "step-%07lld.png", static_cast<long long>(step + 1));
      RETURN_IF_ERROR(WriteGrid((run_dir / "samples" / name).string(), images, static_cast<int>(prompts.size())));
      log::Info() << "samples: " << (run_dir / "samples" / name).string() << " (columns: "
                  << prompts.front() << (prompts.size() > 1 ? ", ..." : "") << ")";
    }
    if (proc.rank == 0 && judge && ((step + 1) % o.eval.every == 0 || last)) {
      // On rank 0 alone: the other ranks wait in the next step's first collective.
      DiTStage copy = averaged();
      PromptEvalOptions eo;
      eo.per_class = o.eval.per_class;
      eo.steps = o.eval.steps;
      eo.cfg = o.eval.cfg;
      eo.seed = static_cast<uint64_t>(o.run.seed);
      eo.templates = o.eval.templates;
      ASSIGN_OR_RETURN(PromptEvalResult r, EvaluatePrompts(*copy, *tokenizer, o.data.max_tokens, *judge, eo));
      char line[256];
      std::snprintf(line, sizeof(line), "eval step %lld: prompt accuracy %.3f  Frechet %.3f (floor %.3f)  %.0f s",
                    static_cast<long long>(step + 1), r.prompt_accuracy, r.frechet, r.frechet_floor, r.seconds);
      log::Info() << line;
      if (metrics.is_open()) {
        nlohmann::ordered_json row = {{"step", step + 1}, {"loss", step_loss}};
        const nlohmann::ordered_json result = r.ToJson();
        for (const auto& item : result.items()) row[item.key()] = item.value();
        metrics << row.dump() << "\n";
        metrics.flush();
      }
    }
  }

  // ---- final weights (EMA when kept) ------------------------------------------------------
  if (proc.rank == 0) {
    std::vector<NamedTensor> tensors;
    const auto named = stage->named_parameters();
    for (size_t i = 0; i < named.size(); ++i) {
      tensors.push_back({named[i].key(), ema ? ema->shadow()[i] : named[i].value()});
    }
    RETURN_IF_ERROR(WriteSafetensors((run_dir / "model.safetensors").string(), tensors,
                                     {{"format", "loom-weights"}, {"weights", ema ? "ema" : "raw"}}));
    log::Info() << "wrote " << (run_dir / "model.safetensors").string();
  }
  RETURN_IF_ERROR(group->Barrier());
  return absl::OkStatus();
}

}  // namespace loom::train

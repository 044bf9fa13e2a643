// The training loop (see loop.h).
#include "train/loop.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/fs.h"  // ReadFile
#include "core/log.h"
#include "train/checkpoint.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr int kMaxSkippedInARow = 10;

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

// The numbers of a metrics.jsonl row as TensorBoard scalars, under the row's names
// (those of nested objects as "outer/inner"); the step, non-finite figures (nulls in
// the row's text), strings and lists are left out.
void CollectScalars(const nlohmann::ordered_json& row, const std::string& prefix,
                    std::vector<std::pair<std::string, double>>* out) {
  for (const auto& item : row.items()) {
    if (prefix.empty() && item.key() == "step") continue;
    const std::string name = prefix.empty() ? item.key() : prefix + "/" + item.key();
    if (item.value().is_number() && std::isfinite(item.value().get<double>())) {
      out->push_back({name, item.value().get<double>()});
    }
    if (item.value().is_object()) CollectScalars(item.value(), name, out);
  }
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

Loop::Loop(Parts parts)
    : p_(std::move(parts)),
      o_(*p_.options),
      stage_(*p_.setup->stage),
      runs_(*p_.runs),
      rank_(p_.group->rank()),
      world_(p_.group->size()) {
  if (rank_ == 0) metrics_.open(fs::path(p_.run_dir) / "metrics.jsonl", std::ios::app);
}

absl::Status Loop::Run(int64_t start) {
  if (rank_ == 0 && o_.train.tensorboard) {
    // A new event file per process; its session start at the first step this process
    // logs hides what an earlier one logged after the checkpoint resumed here.
    absl::StatusOr<std::unique_ptr<tensorboard::EventWriter>> events = tensorboard::EventWriter::Open(p_.run_dir, start + 1);
    if (!events.ok()) {
      return absl::Status(events.status().code(), std::string(events.status().message()) +
                                                      " (TensorBoard events; train.tensorboard: false turns them off)");
    }
    events_ = std::move(*events);
  }
  started_ = window_ = Clock::now();
  for (int64_t step = start; step < o_.train.steps; ++step) {
    ASSIGN_OR_RETURN(const Figures f, Step(step));
    window_samples_ += o_.data.batch_size;
    const bool last = step + 1 == o_.train.steps;
    if ((step + 1) % o_.train.log_every == 0 || last) RETURN_IF_ERROR(Log(step, start, f));
    if ((o_.train.checkpoint_every > 0 && (step + 1) % o_.train.checkpoint_every == 0) || last) {
      RETURN_IF_ERROR(Checkpoint(step));
    }
    const bool preview = o_.train.sample_every > 0 && ((step + 1) % o_.train.sample_every == 0 || last);
    const bool evaluate = o_.train.eval_every > 0 && ((step + 1) % o_.train.eval_every == 0 || last);
    if (preview || evaluate) RETURN_IF_ERROR(PreviewAndEvaluate(step, preview, evaluate, f));
  }
  return absl::OkStatus();
}

absl::StatusOr<Loop::Figures> Loop::Step(int64_t step) {
  p_.group->SetStep(step);
  const size_t K = runs_.size();
  std::vector<int> active;
  for (size_t k = 0; k < K; ++k) {
    if (runs_[k].spec.Active(step)) active.push_back(static_cast<int>(k));
  }
  for (int k : active) runs_[k].strategy->ZeroGrad();
  // Losses and metrics stay where they are computed (float64 sums) until the step's one
  // collective; reading them back is the step's one host sync.
  const auto f64 = torch::TensorOptions(torch::kFloat64).device(p_.group->device());
  std::vector<torch::Tensor> loss_sum(K);
  std::vector<std::string> metric_names;
  std::vector<torch::Tensor> metric_sum;
  for (int micro = 0; micro < o_.train.grad_accum; ++micro) {
    ASSIGN_OR_RETURN(data::Batch batch, p_.loader->Next());
    for (int k : active) {
      FreezeAllBut(runs_, k);
      runs_[k].strategy->SetSync(micro == o_.train.grad_accum - 1);
      stages::LossResult r = stage_.Loss(
          batch, {static_cast<uint64_t>(o_.run.seed), step, k, o_.train.precision == "bf16", p_.group});
      torch::Tensor loss = r.loss / o_.train.grad_accum;
      if (k == active.front() && InjectNan(step + 1, rank_)) loss = loss * std::numeric_limits<double>::quiet_NaN();
      loss.backward();
      const torch::Tensor value = loss.detach().to(f64);
      loss_sum[k] = loss_sum[k].defined() ? loss_sum[k] + value : value;
      for (size_t m = 0; m < r.metrics.size(); ++m) {
        const torch::Tensor v = r.metrics[m].second.detach().to(f64) / o_.train.grad_accum;
        if (micro == 0) {
          metric_names.push_back(r.metrics[m].first);
          metric_sum.push_back(v);
        } else {
          torch::Tensor& sum = metric_sum[metric_sum.size() - r.metrics.size() + m];
          sum = sum + v;
        }
      }
    }
    FreezeAllBut(runs_, -1);
  }
  for (int k : active) RETURN_IF_ERROR(runs_[k].strategy->FinishBackward());
  // Losses and metrics averaged over ranks (the same numbers on every rank), and which
  // ranks saw a non-finite loss, in one collective.
  const size_t A = active.size(), M = metric_sum.size();
  std::vector<torch::Tensor> parts;
  torch::Tensor finite = torch::ones({}, f64);
  for (size_t a = 0; a < A; ++a) {
    parts.push_back((loss_sum[active[a]] / world_).reshape({1}));
    finite = finite * torch::isfinite(loss_sum[active[a]]).to(torch::kFloat64);
  }
  for (size_t m = 0; m < M; ++m) parts.push_back((metric_sum[m] / world_).reshape({1}));
  torch::Tensor flags = torch::zeros({world_}, f64);
  flags[rank_] = 1.0 - finite;
  parts.push_back(flags);
  ASSIGN_OR_RETURN(const torch::Tensor global, dist::AllReduceHost(*p_.group, torch::cat(parts), dist::ReduceOp::kSum));
  Figures f;
  f.loss.assign(K, std::numeric_limits<double>::quiet_NaN());
  f.grad_norm.assign(K, std::numeric_limits<double>::quiet_NaN());
  for (size_t a = 0; a < A; ++a) f.loss[active[a]] = global[a].item<double>();
  for (size_t m = 0; m < M; ++m) f.metrics.push_back({metric_names[m], global[A + m].item<double>()});
  for (int r = 0; r < world_ && f.bad_rank < 0; ++r) {
    if (global[A + M + r].item<double>() != 0) f.bad_rank = r;
  }
  bool grads_finite = true;
  if (f.bad_rank < 0) {
    for (int k : active) {
      ASSIGN_OR_RETURN(f.grad_norm[k], runs_[k].strategy->ClipGradNorm(runs_[k].spec.optim.clip_grad));
      grads_finite = grads_finite && std::isfinite(f.grad_norm[k]);
    }
  }
  if (f.bad_rank >= 0 || !grads_finite) {
    const std::string what = f.bad_rank >= 0 ? "the loss is not finite on rank " + std::to_string(f.bad_rank)
                                             : "the gradient norm is not finite";
    if (o_.train.on_nan == "stop") {
      return absl::FailedPreconditionError("step " + std::to_string(step + 1) + ": " + what +
                                           "; lower optim.lr, or set train.on_nan: skip to skip such steps");
    }
    ++skipped_in_a_row_;
    ++p_.skipped_steps;
    log::Warning() << "step " << step + 1 << ": " << what << "; step skipped (train.on_nan = skip)";
    if (skipped_in_a_row_ > kMaxSkippedInARow) {
      return absl::FailedPreconditionError("step " + std::to_string(step + 1) + ": " +
                                           std::to_string(skipped_in_a_row_) +
                                           " steps in a row had non-finite losses; the run has diverged "
                                           "(lower optim.lr and resume from an earlier checkpoint)");
    }
    return f;
  }
  skipped_in_a_row_ = 0;
  for (int k : active) {
    RETURN_IF_ERROR(runs_[k].strategy->Step(runs_[k].LearningRate(step, o_.train.steps)));
    if (runs_[k].ema) runs_[k].ema->Update();
    ++runs_[k].steps;
  }
  stage_.AfterStep(step);
  return f;
}

absl::Status Loop::Log(int64_t step, int64_t start, const Figures& f) {
  const double seconds = std::chrono::duration<double>(Clock::now() - window_).count();
  const double rate = window_samples_ / std::max(seconds, 1e-9);
  const double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
  const double eta = elapsed / (step + 1 - start) * (o_.train.steps - step - 1);
  char line[256];
  const double lr0 = runs_[0].LearningRate(step, o_.train.steps);
  std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.5f  lr %.3g  grad %.3f", static_cast<long long>(step + 1),
                static_cast<long long>(o_.train.steps), f.loss[0], lr0, f.grad_norm[0]);
  std::string text = line;
  nlohmann::ordered_json row = {{"step", step + 1}, {"loss", f.loss[0]}, {"lr", lr0}, {"grad_norm", f.grad_norm[0]}};
  for (size_t k = 1; k < runs_.size(); ++k) {
    if (!runs_[k].spec.Active(step)) continue;
    const std::string& name = runs_[k].spec.name;
    std::snprintf(line, sizeof(line), "  %s loss %.5f  grad %.3f", name.c_str(), f.loss[k], f.grad_norm[k]);
    text += line;
    row[name + ".loss"] = f.loss[k];
    row[name + ".lr"] = runs_[k].LearningRate(step, o_.train.steps);
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
  row["skipped_steps"] = p_.skipped_steps;
  window_ = Clock::now();
  window_samples_ = 0;
  return WriteRow(row);
}

absl::Status Loop::Checkpoint(int64_t step) {
  CheckpointState state;
  state.step = step + 1;
  state.loader = p_.loader->state();
  state.world = world_;
  state.trainables = Records(runs_);
  state.skipped_steps = p_.skipped_steps;
  state.dependencies = p_.setup->dependency_records;
  ASSIGN_OR_RETURN(const std::vector<int64_t> bytes,
                   SaveCheckpoint(*p_.group, p_.run_dir, state, CheckpointSlices(stage_, runs_, rank_),
                                  *p_.resolved_yaml, stage_.Assets(), o_.train.keep_checkpoints));
  std::string per_rank;
  for (int64_t b : bytes) per_rank += (per_rank.empty() ? "" : ", ") + std::to_string(b);
  log::Info() << "checkpoint: " << p_.run_dir << "/checkpoints step " << step + 1 << " (bytes written per rank: "
              << per_rank << ")";
  return absl::OkStatus();
}

absl::Status Loop::PreviewAndEvaluate(int64_t step, bool preview, bool evaluate, const Figures& f) {
  // The moving averages as a fresh copy of the stage, on rank 0 once gathered (the other
  // ranks wait in the next step's collectives meanwhile).
  ASSIGN_OR_RETURN(auto weights, GatherWeights(stage_, runs_, /*ema=*/true));
  if (rank_ != 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::shared_ptr<stages::Stage> copy, CopyStage(*p_.setup, weights, p_.device));
  if (preview) {
    const std::string png = (fs::path(p_.run_dir) / "samples" / StepFile(step + 1)).string();
    RETURN_IF_ERROR(copy->Preview(p_.preview, png));
    log::Info() << "preview: " << png;
    if (events_) {
      ASSIGN_OR_RETURN(const std::string bytes, ReadFile(png));
      RETURN_IF_ERROR(events_->AddPng("samples", step + 1, bytes));
    }
  }
  if (evaluate) {
    ASSIGN_OR_RETURN(nlohmann::ordered_json result, copy->Evaluate(p_.preview));
    log::Info() << "eval step " << step + 1 << ": " << result.dump();
    nlohmann::ordered_json row = {{"step", step + 1}, {"loss", f.loss[0]}};
    for (const auto& item : result.items()) row[item.key()] = item.value();
    RETURN_IF_ERROR(WriteRow(row));
  }
  return absl::OkStatus();
}

absl::Status Loop::WriteRow(const nlohmann::ordered_json& row) {
  if (metrics_.is_open()) {
    metrics_ << row.dump() << "\n";
    metrics_.flush();
  }
  if (!events_) return absl::OkStatus();
  std::vector<std::pair<std::string, double>> scalars;
  CollectScalars(row, "", &scalars);
  return events_->AddScalars(row.at("step").get<int64_t>(), scalars);
}

}  // namespace loom::train

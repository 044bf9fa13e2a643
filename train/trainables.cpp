// Trainables at run time (see trainables.h).
#include "train/trainables.h"

#include <set>

#include "train/optim.h"

namespace loom::train {
namespace {

constexpr char kParam[] = "param/";
constexpr char kEma[] = "ema/";
constexpr char kAdam[] = "adam/";
constexpr char kBuffer[] = "buffer/";

// The name of `module` inside `stage` ("" for the stage itself).
std::string PrefixOf(stages::Stage& stage, const torch::nn::Module* module) {
  for (const auto& item : stage.named_modules("", /*include_self=*/true)) {
    if (item.value().get() == module) return item.key().empty() ? "" : item.key() + ".";
  }
  return "";
}

}  // namespace

double TrainableRun::LearningRate(int64_t step, int64_t total) const {
  const int64_t every = std::max<int64_t>(1, spec.every);
  const int64_t span = std::max<int64_t>(1, (total - spec.start + every - 1) / every);
  return train::LearningRate(spec.optim, (step - spec.start) / every, span);
}

absl::StatusOr<std::vector<TrainableRun>> StartTrainables(stages::Stage& stage, dist::ProcessGroup& group,
                                                          const dist::DistOptions& options) {
  std::vector<TrainableRun> runs;
  std::set<const void*> seen;
  for (stages::Trainable& t : stage.Trainables()) {
    TrainableRun run;
    run.prefix = PrefixOf(stage, t.module.get());
    if (run.prefix.empty() && t.module.get() != &stage) {
      return absl::InternalError("trainable '" + t.name + "' is not a submodule of its stage");
    }
    for (const auto& p : t.module->parameters()) {
      if (!seen.insert(p.unsafeGetTensorImpl()).second) {
        return absl::InternalError("a parameter belongs to two trainables (" + t.name + ")");
      }
      run.params.push_back(p);
    }
    dist::AdamWSettings adamw = AdamWSettingsOf(t.optim);
    adamw.no_decay = t.no_decay;
    ASSIGN_OR_RETURN(run.strategy, dist::ApplyStrategy(t.module, group, options, adamw));
    if (t.ema > 0) run.ema = std::make_unique<Ema>(run.strategy->ParameterSlices(), t.ema);
    run.spec = std::move(t);
    runs.push_back(std::move(run));
  }
  if (runs.empty()) return absl::InternalError("the stage has no trainables");
  return runs;
}

void FreezeAllBut(std::vector<TrainableRun>& runs, int active) {
  if (runs.size() < 2) return;  // one trainable: nothing else to freeze
  for (size_t k = 0; k < runs.size(); ++k) {
    const bool on = active < 0 || static_cast<int>(k) == active;
    for (auto& p : runs[k].params) p.requires_grad_(on);
  }
}

std::vector<StoredSlice> CheckpointSlices(stages::Stage& stage, std::vector<TrainableRun>& runs, int rank) {
  std::vector<StoredSlice> out;
  for (TrainableRun& run : runs) {
    if (!run.strategy->parameters_replicated() || rank == 0) {
      const std::vector<dist::Slice> slices = run.strategy->ParameterSlices();
      for (size_t i = 0; i < slices.size(); ++i) {
        const dist::Slice& s = slices[i];
        out.push_back({kParam + run.prefix + s.name, s.shape, s.begin, s.end, s.data});
        if (run.ema) out.push_back({kEma + run.prefix + s.name, s.shape, s.begin, s.end, run.ema->shadow()[i]});
      }
    }
    const dist::Strategy::OptimizerSlices opt = run.strategy->OptimizerState();
    if (!opt.replicated || rank == 0) {
      for (const dist::Slice& s : opt.slices) out.push_back({kAdam + run.prefix + s.name, s.shape, s.begin, s.end, s.data});
    }
  }
  if (rank == 0) {
    for (const auto& b : stage.named_buffers()) {
      out.push_back({kBuffer + b.key(), b.value().sizes().vec(), 0, b.value().numel(), b.value()});
    }
  }
  return out;
}

std::vector<TrainableRecord> Records(std::vector<TrainableRun>& runs) {
  std::vector<TrainableRecord> out;
  for (TrainableRun& run : runs) {
    const int64_t adam_step = run.strategy->OptimizerState().step;
    out.push_back({run.spec.name, run.strategy->name(), adam_step, run.ema ? run.ema->updates() : -1, run.steps});
  }
  return out;
}

absl::Status LoadTrainables(stages::Stage& stage, std::vector<TrainableRun>& runs, const OpenedCheckpoint& ck) {
  const SliceStore& store = ck.tensors;
  const auto another = [&](const std::string& what) {
    return absl::InvalidArgumentError(ck.dir + " holds another model (" + what + "); it cannot resume this config");
  };
  if (ck.state.trainables.size() != runs.size()) {
    return another(std::to_string(ck.state.trainables.size()) + " trainables, this stage has " +
                   std::to_string(runs.size()));
  }
  size_t stored_params = store.Keys(kParam).size();
  size_t params = 0;
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < runs.size(); ++k) {
    TrainableRun& run = runs[k];
    const TrainableRecord& record = ck.state.trainables[k];
    if (record.name != run.spec.name) return another("trainable " + record.name + " where " + run.spec.name + " was expected");
    const std::vector<dist::Slice> slices = run.strategy->ParameterSlices();
    for (size_t i = 0; i < slices.size(); ++i) {
      const dist::Slice& s = slices[i];
      const std::string key = kParam + run.prefix + s.name;
      if (!store.Has(key) || store.Shape(key) != s.shape) {
        return another("parameter '" + run.prefix + s.name + "' is missing or has another shape");
      }
      ASSIGN_OR_RETURN(torch::Tensor value, store.Read(key, s.begin, s.end));
      torch::Tensor(s.data).copy_(value);
      if (run.ema) {
        const std::string ema_key = kEma + run.prefix + s.name;
        if (store.Has(ema_key)) {
          ASSIGN_OR_RETURN(torch::Tensor avg, store.Read(ema_key, s.begin, s.end));
          run.ema->shadow()[i].copy_(avg);
        } else {
          run.ema->shadow()[i].copy_(value);  // the checkpoint kept no average: start it here
        }
      }
    }
    params += run.params.size();
    if (run.ema) run.ema->set_updates(std::max<int64_t>(0, record.ema_updates));
    run.steps = record.steps;
    const std::string prefix = kAdam + run.prefix;
    RETURN_IF_ERROR(run.strategy->LoadOptimizerState(
        [&](const std::string& name, int64_t begin, int64_t end) -> absl::StatusOr<torch::Tensor> {
          if (!store.Has(prefix + name)) {
            return absl::InvalidArgumentError(ck.dir + " holds no optimizer state for '" + run.prefix + name + "'");
          }
          return store.Read(prefix + name, begin, end);
        },
        record.adam_step));
  }
  if (stored_params != params) return another(std::to_string(stored_params) + " parameters stored, " +
                                              std::to_string(params) + " expected");
  for (auto& b : stage.named_buffers()) {
    const std::string key = kBuffer + b.key();
    if (!store.Has(key) || store.Shape(key) != b.value().sizes().vec()) {
      return another("buffer '" + b.key() + "' is missing or has another shape");
    }
    ASSIGN_OR_RETURN(torch::Tensor value, store.ReadWhole(key));
    b.value().copy_(value);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, torch::Tensor>> GatherWeights(stages::Stage& stage,
                                                                   std::vector<TrainableRun>& runs, bool ema) {
  std::map<std::string, torch::Tensor> out;
  for (TrainableRun& run : runs) {
    std::vector<torch::Tensor> values;
    if (ema && run.ema) {
      values = run.ema->shadow();
    } else {
      for (const dist::Slice& s : run.strategy->ParameterSlices()) values.push_back(s.data);
    }
    ASSIGN_OR_RETURN(auto whole, run.strategy->GatherOnRoot(values));
    for (auto& [name, t] : whole) out[run.prefix + name] = t.to(torch::kCPU);
  }
  if (!out.empty()) {
    for (const auto& b : stage.named_buffers()) out[b.key()] = b.value().detach().to(torch::kCPU).clone();
  }
  return out;
}

absl::Status LoadWeights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& weights,
                         const std::string& source) {
  torch::NoGradGuard no_grad;
  std::set<std::string> known;
  const auto fit = [&](const std::string& name, torch::Tensor target, bool required) -> absl::Status {
    known.insert(name);
    const auto it = weights.find(name);
    if (it == weights.end()) {
      if (!required) return absl::OkStatus();
      return absl::InvalidArgumentError(source + ": parameter '" + name + "' is missing; the weights do not fit their config");
    }
    if (it->second.sizes() != target.sizes()) {
      return absl::InvalidArgumentError(source + ": parameter '" + name + "' has shape " + c10::str(it->second.sizes()) +
                                        ", the config needs " + c10::str(target.sizes()));
    }
    target.copy_(it->second);
    return absl::OkStatus();
  };
  for (auto& item : module.named_parameters()) RETURN_IF_ERROR(fit(item.key(), item.value(), true));
  for (auto& item : module.named_buffers()) RETURN_IF_ERROR(fit(item.key(), item.value(), false));
  for (const auto& [name, t] : weights) {
    if (!known.count(name)) {
      return absl::InvalidArgumentError(source + ": tensor '" + name + "' is not part of the configured model");
    }
  }
  return absl::OkStatus();
}

}  // namespace loom::train

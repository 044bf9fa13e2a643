// Resuming runs (see resume.h).
#include "train/resume.h"

#include "core/log.h"
#include "train/config_diff.h"

namespace loom::train {
namespace {

// The changes to a run's config that would resume it into another experiment.
absl::Status CheckConfig(const std::string& run_dir, const std::string& saved, const std::string& now) {
  ASSIGN_OR_RETURN(std::vector<ConfigChange> changes, DiffConfigs(saved, now));
  std::string refused, noted;
  for (const ConfigChange& c : changes) {
    std::string text = c.key + " " + c.before + " -> " + c.after;
    std::string& list = MayChangeOnResume(c.key) ? noted : refused;
    list += (list.empty() ? "" : ", ") + text;
  }
  if (!refused.empty()) {
    return absl::InvalidArgumentError(run_dir + " was started with another config (" + refused +
                                      "); resuming would train another experiment: restore those keys, or start a "
                                      "new run (another run.name)");
  }
  if (!noted.empty()) log::Info() << "resuming with changed settings: " << noted;
  return absl::OkStatus();
}

absl::Status CheckDependencies(const nlohmann::json& saved, const nlohmann::json& now) {
  for (const auto& [name, record] : now.items()) {
    if (!saved.contains(name)) continue;  // a config change, refused by CheckConfig
    const std::string was = saved[name].value("hash", ""), is = record.value("hash", "");
    if (was != is) {
      return absl::FailedPreconditionError(
          "stage." + name + ": " + record.value("path", "") + " has changed since the run started (content hash " +
          was.substr(0, 12) + "... then, " + is.substr(0, 12) + "... now); restore that export, or start a new run");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> AgreedNewestCheckpoint(dist::ProcessGroup& group, const std::string& run_dir) {
  const auto complete = CompleteCheckpoints(run_dir);
  const int64_t mine = complete.empty() ? -1 : complete.back().first;
  ASSIGN_OR_RETURN(const torch::Tensor all, dist::AllGatherHost(group, torch::tensor({mine}, torch::kInt64)));
  for (int r = 0; r < group.size(); ++r) {
    const int64_t theirs = all[r].item<int64_t>();
    if (theirs != all[0].item<int64_t>()) {
      const auto name = [](int64_t s) { return s < 0 ? std::string("none") : "step " + std::to_string(s); };
      return absl::FailedPreconditionError(
          "the ranks see different newest checkpoints under " + run_dir + "/checkpoints (rank 0: " +
          name(all[0].item<int64_t>()) + ", rank " + std::to_string(r) + ": " + name(theirs) +
          "): run.dir must be a directory that every rank shares");
    }
  }
  return mine;
}

absl::StatusOr<std::optional<CheckpointState>> Resume(dist::ProcessGroup& group, const std::string& run_dir,
                                                      stages::Stage& stage, std::vector<TrainableRun>& runs,
                                                      const std::string& resolved_yaml,
                                                      const nlohmann::json& dependencies) {
  ASSIGN_OR_RETURN(const int64_t newest, AgreedNewestCheckpoint(group, run_dir));
  if (newest < 0) return std::optional<CheckpointState>();
  // Rank 0's candidates, newest first, for every rank.
  const auto complete = CompleteCheckpoints(run_dir);
  ASSIGN_OR_RETURN(const torch::Tensor count,
                   dist::BroadcastHost(group, torch::tensor({static_cast<int64_t>(complete.size())}, torch::kInt64), 0));
  torch::Tensor mine_steps = torch::zeros({count.item<int64_t>()}, torch::kInt64);
  for (size_t i = 0; group.rank() == 0 && i < complete.size(); ++i) mine_steps[static_cast<int64_t>(i)] = complete[i].first;
  ASSIGN_OR_RETURN(const torch::Tensor steps, dist::BroadcastHost(group, mine_steps, 0));

  std::string first_damage;
  for (int64_t i = steps.size(0) - 1; i >= 0; --i) {
    char name[32];
    std::snprintf(name, sizeof(name), "step-%07lld", static_cast<long long>(steps[i].item<int64_t>()));
    const std::string dir = run_dir + "/checkpoints/" + name;
    CheckpointState state;
    const absl::Status status = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(OpenedCheckpoint ck, OpenCheckpoint(dir));
      RETURN_IF_ERROR(CheckConfig(run_dir, ck.config_yaml, resolved_yaml));
      RETURN_IF_ERROR(CheckDependencies(ck.state.dependencies, dependencies));
      RETURN_IF_ERROR(LoadTrainables(stage, runs, ck));
      state = ck.state;
      return absl::OkStatus();
    }();
    const bool damaged = absl::IsDataLoss(status) || absl::IsNotFound(status);
    if (!status.ok() && !damaged) return status;  // another model or config: no older checkpoint helps
    // 1 where a rank found damage: every rank passes over the same checkpoints.
    ASSIGN_OR_RETURN(const torch::Tensor flag,
                     dist::AllReduceHost(group, torch::tensor({damaged ? 1.0 : 0.0}, torch::kFloat64),
                                         dist::ReduceOp::kSum));
    if (flag.item<double>() == 0) {
      if (!first_damage.empty() && group.rank() == 0) log::Warning() << "resuming from the older intact checkpoint " << dir;
      return std::optional<CheckpointState>(state);
    }
    if (damaged) {
      log::Warning() << "checkpoint " << dir << " is damaged: " << status.message();
      if (first_damage.empty()) first_damage = dir + ": " + std::string(status.message());
    }
    if (first_damage.empty()) first_damage = dir + " (damaged on another rank)";
    if (group.rank() == 0) log::Warning() << "passing over the damaged checkpoint " << dir;
  }
  return absl::DataLossError("no intact checkpoint under " + run_dir + "/checkpoints (newest: " + first_damage +
                             "); restore the files, or start a new run (another run.name)");
}

}  // namespace loom::train

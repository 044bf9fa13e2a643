// Training a run (see trainer.h): checks and set-up before anything is written (the
// stage and its dependencies, the process group, the trainables, resuming), the run
// directory, the loop (loop.h), the final weights.
#include "train/trainer.h"

#include <filesystem>

#include "core/fs.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "dist/placement.h"
#include "dist/process_group.h"
#include "dist/runtime.h"
#include "train/checkpoint.h"
#include "train/loop.h"
#include "train/resume.h"
#include "train/run_setup.h"
#include "train/trainables.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

// The final weights (moving averages where kept) and buffers, by stage name.
absl::Status WriteFinalWeights(const std::string& path, const std::map<std::string, torch::Tensor>& weights, bool ema) {
  std::vector<NamedTensor> tensors;
  for (const auto& [name, t] : weights) tensors.push_back({name, t});
  return WriteSafetensors(path, tensors, {{"format", "loom-weights"}, {"weights", ema ? "ema" : "raw"}});
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
  int64_t params = 0;  // counted before ZeRO-3 shards them
  for (const auto& p : stage.parameters()) params += p.numel();
  ASSIGN_OR_RETURN(std::vector<TrainableRun> runs, StartTrainables(stage, *group, o.dist));
  ASSIGN_OR_RETURN(std::optional<CheckpointState> resume,
                   Resume(*group, run_dir.string(), stage, runs, resolved_yaml, setup.dependency_records));
  const int64_t start_step = resume ? resume->step : 0;
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

  Loop::Parts parts;
  parts.options = &o;
  parts.resolved_yaml = &resolved_yaml;
  parts.setup = &setup;
  parts.group = group.get();
  parts.runs = &runs;
  parts.loader = loader.get();
  parts.run_dir = run_dir.string();
  parts.device = device;
  parts.preview = std::move(preview);
  parts.skipped_steps = resume ? resume->skipped_steps : 0;
  RETURN_IF_ERROR(Loop(std::move(parts)).Run(start_step));

  // ---- final weights (moving averages where kept) ----------------------------------------
  ASSIGN_OR_RETURN(auto weights, GatherWeights(stage, runs, /*ema=*/true));
  if (proc.rank == 0) {
    RETURN_IF_ERROR(WriteFinalWeights(weights_path, weights, runs[0].ema != nullptr));
    log::Info() << "wrote " << weights_path;
  }
  return group->Barrier();
}

}  // namespace loom::train

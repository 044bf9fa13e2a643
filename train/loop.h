// The training loop of a set-up run (trainer.cpp sets it up): each step runs the stage's
// loss for every active trainable on the same micro-batches, reduces, clips and steps
// them, and updates their moving averages; then the progress line and metrics.jsonl,
// checkpoints, previews and evaluations on their schedules; TensorBoard events of the
// figures and previews beside them.
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/status.h"
#include "core/tensorboard.h"  // EventWriter
#include "data/loader.h"
#include "dist/process_group.h"
#include "train/experiment.h"
#include "train/run_setup.h"
#include "train/trainables.h"

namespace loom::train {

class Loop {
 public:
  struct Parts {
    const ExperimentOptions* options = nullptr;
    const std::string* resolved_yaml = nullptr;
    RunSetup* setup = nullptr;
    dist::ProcessGroup* group = nullptr;
    std::vector<TrainableRun>* runs = nullptr;
    data::Loader* loader = nullptr;
    std::string run_dir;
    torch::Device device = torch::kCPU;
    stages::PreviewData preview;  // rank 0, when previews or evaluations are on
    int64_t skipped_steps = 0;    // from the checkpoint resumed
  };
  explicit Loop(Parts parts);

  // Steps from `start` to train.steps.
  absl::Status Run(int64_t start);

 private:
  // One step's figures, the same on every rank after one all-reduce.
  struct Figures {
    std::vector<double> loss;       // per trainable (NaN when inactive)
    std::vector<double> grad_norm;  // per trainable
    std::vector<std::pair<std::string, double>> metrics;
    int bad_rank = -1;              // the first rank whose loss was not finite
  };

  absl::StatusOr<Figures> Step(int64_t step);
  absl::Status Log(int64_t step, int64_t start, const Figures& f);
  absl::Status Checkpoint(int64_t step);
  absl::Status PreviewAndEvaluate(int64_t step, bool preview, bool evaluate, const Figures& f);
  // One metrics.jsonl row, and its figures as TensorBoard scalars at the row's step.
  absl::Status WriteRow(const nlohmann::ordered_json& row);

  Parts p_;
  const ExperimentOptions& o_;
  stages::Stage& stage_;
  std::vector<TrainableRun>& runs_;
  int rank_, world_;
  std::ofstream metrics_;
  std::unique_ptr<tensorboard::EventWriter> events_;  // rank 0, unless train.tensorboard is off
  std::chrono::steady_clock::time_point started_, window_;
  int64_t window_samples_ = 0;
  int skipped_in_a_row_ = 0;
};

}  // namespace loom::train

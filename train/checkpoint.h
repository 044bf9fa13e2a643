// Checkpoints (format 2): run_dir/checkpoints/step-NNNNNNN/ holds
//   rank-RRRRR.safetensors  what rank R holds (train/slice_store.h): per trainable its
//                           parameters "param/<name>", their moving average "ema/<name>"
//                           and its AdamW state "adam/<name>.exp_avg(_sq)" (replicated
//                           state from rank 0 only, shards from every rank), and, from
//                           rank 0, the stage's buffers "buffer/<name>"
//   config.yaml             the resolved experiment config
//   assets                  the stage's files (tokenizer.model, ...)
//   state.json              step, loader state, world size, each trainable's strategy and
//                           step counts, the files with their sizes, the frozen
//                           dependencies (path and content hash); written last by rank 0
// Each rank writes only its own share, so under ZeRO no rank ever holds more than its
// 1/N; any strategy at any world size reads back the ranges it needs. The directory is
// built as step-NNNNNNN.tmp and renamed when complete: a crash at any moment leaves the
// previous checkpoints loadable and the partial one ignored.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "data/sample_plan.h"
#include "dist/process_group.h"
#include "train/slice_store.h"

namespace loom::train {

inline constexpr int kCheckpointVersion = 2;

// One trainable's bookkeeping in state.json.
struct TrainableRecord {
  std::string name;
  std::string strategy;
  int64_t adam_step = 0;    // AdamW's step count (0: no optimizer state yet)
  int64_t ema_updates = 0;  // -1: no moving average kept
  int64_t steps = 0;        // optimizer steps taken (its LR schedule position)
};

struct CheckpointState {
  int64_t step = 0;
  data::LoaderState loader;
  int world = 1;
  std::vector<TrainableRecord> trainables;
  int64_t skipped_steps = 0;
  nlohmann::json dependencies = nlohmann::json::object();  // name -> {path, hash, kind}
  std::map<std::string, int64_t> files;                     // rank file -> bytes
};

// Writes a checkpoint; collective (every rank passes its slices, rank 0 the rest) and
// keeps the newest `keep`. Returns the bytes each rank wrote.
absl::StatusOr<std::vector<int64_t>> SaveCheckpoint(dist::ProcessGroup& group, const std::string& run_dir,
                                       const CheckpointState& state, const std::vector<StoredSlice>& slices,
                                       const std::string& config_yaml,
                                       const std::map<std::string, std::string>& assets, int keep);

// The complete checkpoints of a run (those with state.json), oldest first: (step, dir).
std::vector<std::pair<int64_t, std::string>> CompleteCheckpoints(const std::string& run_dir);

// A checkpoint directory opened for reading: its state, config and tensors.
struct OpenedCheckpoint {
  std::string dir;
  CheckpointState state;
  std::string config_yaml;
  std::map<std::string, std::string> assets;
  SliceStore tensors;
};

// Reads state.json, config.yaml and the assets, and the rank files' headers; DataLoss
// errors name a damaged or missing file.
absl::StatusOr<OpenedCheckpoint> OpenCheckpoint(const std::string& dir);

}  // namespace loom::train

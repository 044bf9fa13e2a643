// Models for inference. A model is found in a run directory (its newest checkpoint), a
// checkpoint directory (runs/NAME/checkpoints/step-N) or an export; an export is a
// directory with
//   model.safetensors  every parameter and buffer of the stage by name (fp32, bf16 or fp16)
//   config.json        architecture and diffusion settings, for tools outside loom
//   config.yaml        the resolved experiment config, for loom
//   tokenizer.model    the caption tokenizer
// `loom export` writes one; `loom sample` and `loom eval prompts` read all three kinds.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "train/dit_stage.h"
#include "train/options.h"

namespace loom::train {

struct ModelBundle {
  ExperimentOptions options;                     // the resolved experiment config
  std::map<std::string, torch::Tensor> tensors;  // parameters (and buffers) by name, fp32
  std::string tokenizer_model;                   // serialized tokenizer; empty = none
  int64_t step = 0;
  std::string weights = "ema";                   // "ema" or "raw"
  std::string source;                            // where it was loaded from
};

// Every parameter and buffer of the stage by name, as detached float32 CPU copies.
std::map<std::string, torch::Tensor> StageTensors(DiTStageImpl& stage);

// Loads the model at `path` (run, checkpoint or export directory). `weights`: "ema" (the
// exponential average, or the raw weights of a run that kept none) or "raw" (the
// optimizer's weights). An export holds one set, whichever it was made from.
absl::StatusOr<ModelBundle> LoadModel(const std::string& path, const std::string& weights = "ema");

// The architecture of a bundle (image size and channels from its weights).
absl::StatusOr<models::DiTConfig> BundleDiTConfig(const ModelBundle& bundle);

// The bundle's DiT stage with its weights, in eval mode on the CPU. Refuses tensors that
// do not fit the config (a missing, extra or differently shaped parameter).
absl::StatusOr<DiTStage> BuildStage(const ModelBundle& bundle);

// Writes an export of `bundle` to `out_dir` (created; an existing directory must be an
// export or empty). dtype: fp32, bf16 or fp16 (floating tensors are cast).
absl::Status WriteExport(const ModelBundle& bundle, const std::string& out_dir, const std::string& dtype);

}  // namespace loom::train

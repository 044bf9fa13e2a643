// The Stage interface: one training objective, the unit every loom model is built from.
// A stage is a module whose submodules are everything it trains; it declares its
// trainables (one per optimizer), the batch fields it needs, its loss, its preview and
// evaluation, and the description its export carries. Frozen upstream models (a trained
// VAE, a text encoder) are its dependencies: loaded from their exports, held outside the
// module tree, so they are in no optimizer, EMA or checkpoint. The trainer, checkpoints,
// exports and `loom sample`/`loom eval` see only this interface; stages/registry.h is the
// one list of kinds.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "data/loader.h"      // Batch, Loader
#include "data/options.h"     // DataOptions
#include "stages/capabilities.h"
#include "train/optim.h"      // OptimOptions

namespace loom::dist {
class ProcessGroup;
}

namespace loom::stages {

// One optimizer's share of a stage: a submodule with its own AdamW, schedule, clipping
// and EMA, trained at steps start, start + every, start + 2 * every, ...
struct Trainable {
  std::string name;                           // "model", "disc": names its metrics and state
  std::shared_ptr<torch::nn::Module> module;  // the stage itself or one of its submodules
  train::OptimOptions optim;
  // Parameters (named relative to `module`) left out of weight decay; none when unset.
  std::function<bool(const std::string& name)> no_decay;
  double ema = 0;     // decay of the weights' moving average; 0 = none
  int64_t every = 1;
  int64_t start = 0;  // first step (counted from 0) at which it trains

  bool Active(int64_t step) const { return step >= start && (step - start) % every == 0; }
};

// What a stage reads from the loader.
struct DataNeeds {
  bool pixels = false;               // images in [-1, 1]
  bool clips = false;                // with pixels: clips [B, T, C, H, W] instead of images
  bool tokens = false;               // caption token ids and mask (a tokenizer)
  std::vector<std::string> caches;   // datasets written by `loom data encode` ("latents")
  // For each cache, the dependency whose export must have produced it.
  std::map<std::string, std::string> cache_producers;
};

struct StepContext {
  uint64_t seed = 0;   // run.seed: per-sample draws come from (seed, step, sample id)
  int64_t step = 0;    // counted from 0
  int trainable = 0;   // whose loss is asked for (index into Trainables())
  bool bf16 = false;   // autocast the forward
  // The job's ranks, for a loss that compares this rank's samples with every rank's
  // (dist/gather.h); null in a single process. The strategy averages gradients over
  // ranks: a stage never reduces them itself.
  dist::ProcessGroup* group = nullptr;
};

struct LossResult {
  torch::Tensor loss;  // scalar: the mean over this rank's micro-batch, to differentiate
  // Scalars for the progress line and metrics.jsonl (averaged over ranks), named the
  // same on every rank at a given step.
  std::vector<std::pair<std::string, torch::Tensor>> metrics;
};

// A fixed batch for previews and evaluations (rank 0), with the dataset's label names
// and the run's data options (an evaluation may read data.test).
struct PreviewData {
  data::Batch batch;
  std::vector<std::string> label_names;
  uint64_t seed = 0;
  data::DataOptions data;
};

class Stage : public torch::nn::Module {
 public:
  ~Stage() override = default;

  virtual std::string kind() const = 0;
  virtual std::vector<Trainable> Trainables() = 0;
  virtual DataNeeds Needs() const = 0;

  // The loss of trainable ctx.trainable on this rank's micro-batch. Parameters of the
  // other trainables are frozen meanwhile. Called for each active trainable in order
  // with the same batch: a stage may keep what one computed for the next (a VAE's
  // reconstructions for its discriminator).
  virtual LossResult Loss(const data::Batch& batch, const StepContext& ctx) = 0;

  // After the optimizer steps of `step` (e.g. clamping a temperature).
  virtual void AfterStep(int64_t step) {}

  // Writes the run's picture for this step (samples, or reconstructions beside inputs).
  virtual absl::Status Preview(const PreviewData& data, const std::string& png_path) = 0;

  // The evaluation during training: one row of named figures for metrics.jsonl.
  virtual absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) {
    return nlohmann::ordered_json::object();
  }

  // Figures measured on the training data before an export (a VAE's latent scale),
  // stored in the export and given back to the stage when it is loaded. A stage that
  // wants them says how many training samples to read (0: none, no calibration).
  virtual int64_t calibration_samples() const { return 0; }
  virtual absl::StatusOr<nlohmann::ordered_json> Calibrate(data::Loader& loader, int64_t batches) {
    return nlohmann::ordered_json::object();
  }
  virtual absl::Status SetCalibration(const nlohmann::json& calibration) { return absl::OkStatus(); }
  virtual nlohmann::ordered_json calibration() const { return nlohmann::ordered_json::object(); }

  // FLOPs of one forward pass of the trained networks over `batch` samples (2 per
  // multiply-add), for `loom bench step`; 0 when the stage does not count them.
  virtual double ForwardFlops(int64_t batch) const { return 0; }

  // The architecture, as config.json of an export describes it to tools outside loom.
  virtual nlohmann::ordered_json Describe() const = 0;

  // Files beside the weights that the stage needs at inference ("tokenizer.model").
  virtual std::map<std::string, std::string> Assets() const { return {}; }

  // What the stage can do at inference; null when it cannot.
  virtual TextToImage* AsTextToImage() { return nullptr; }
  virtual TextToVideo* AsTextToVideo() { return nullptr; }
  virtual SuperResolution* AsSuperResolution() { return nullptr; }
  virtual Autoencoder* AsAutoencoder() { return nullptr; }
  virtual VideoAutoencoder* AsVideoAutoencoder() { return nullptr; }
  virtual TextEncoding* AsTextEncoding() { return nullptr; }
  virtual CacheProducer* AsCacheProducer() { return nullptr; }
  virtual JointEmbedding* AsJointEmbedding() { return nullptr; }
  virtual EmbeddingPrior* AsEmbeddingPrior() { return nullptr; }
  virtual ImageVariation* AsImageVariation() { return nullptr; }
};

}  // namespace loom::stages

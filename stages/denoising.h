// What the text-to-image diffusion stages (dit, ldm) share: the per-sample draws of a
// training step, caption dropout, the stage's own caption tokenizer, the preview grid of
// class prompts and the judged evaluation. Every draw of a sample comes from
// (run seed, step, global sample id), so any world size draws the same values.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/schema.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "diffusion/options.h"
#include "diffusion/process.h"
#include "eval/judge.h"
#include "stages/stage.h"

namespace loom::stages {

// Judged evaluation (train.eval_every): prompt accuracy and Fréchet distance.
struct JudgedEvalOptions {
  std::string judge = "";  // judge directory made by `loom eval classifier`
  int64_t per_class = 10;
  int steps = 25;
  double cfg = 4.0;
  std::vector<std::string> templates;  // empty: the default templates

  static void Describe(config::Fields<JudgedEvalOptions>& f);
};

// The clean sample, timestep and noise of each row of a training batch.
struct TrainingDraws {
  torch::Tensor x0;     // [B, C, ...]
  torch::Tensor t;      // [B], of the process's time dtype
  torch::Tensor noise;  // [B, C, ...]
};

// Draws for a batch of `source` rows: pixels, or (with `latent_scale` > 0) latent
// posteriors, mean and log-variance stacked on the channel axis, from which a latent is
// drawn and multiplied by the scale. Per row, in this order from one generator: t (by
// the process, for samples of `tokens` tokens), noise, the latent's draw.
TrainingDraws DrawTraining(const torch::Tensor& source, double latent_scale, const torch::Tensor& ids, uint64_t seed,
                           int64_t step, const diffusion::Process& process, int64_t tokens = 0);

// The starting noise [B, C, S, S] of sampling: row i's from (seed, i), so the same seed
// gives the same images at any batch split.
torch::Tensor SamplingNoise(int64_t rows, int64_t channels, int64_t size, uint64_t seed);

// The one trainable of a stage that trains everything it registers, with the run's
// optimizer and EMA.
std::vector<Trainable> WholeStage(std::shared_ptr<torch::nn::Module> stage, const train::OptimOptions& optim,
                                  double ema);

// The help of a denoising stage's `vae` option.
inline constexpr char kVaeOptionDoc[] =
    "a VAE export (frozen): train on its latents (data.train made by 'loom data encode --with' it) and sample "
    "through its decoder; empty: train on pixels";

// Whether sample `id` trains on the empty caption at `step` (classifier-free guidance).
bool DropsCaption(uint64_t seed, int64_t step, uint64_t id, double dropout);

// The empty caption (start token, then padding) in rows like `tokens`.
void EmptyCaption(torch::Tensor tokens, torch::Tensor mask);

// Inserts one or two tokens drawn from [3, vocab) at random places after the start token
// of one caption row (as far as its padding has room), drawing from `rng`: captions with
// words the data never has, so the model learns to rely on the words it knows.
void InsertNoiseTokens(torch::Tensor tokens, torch::Tensor mask, int64_t vocab, SplitMix64& rng);

// The batch's caption tokens and mask as a step trains on them: each sample's caption
// dropped (DropsCaption) or, with probability `caption_noise`, given noise tokens; every
// coin from (seed, step, sample id).
std::pair<torch::Tensor, torch::Tensor> TrainingCaptions(const data::Batch& batch, uint64_t seed, int64_t step,
                                                         double dropout, double caption_noise, int64_t vocab);

// The caption tokenizer of a stage that trains its own text encoder: from the stage's
// saved assets, or data.tokenizer, or data.train/tokenizer.model; checked against `vocab`.
absl::StatusOr<std::shared_ptr<const data::Tokenizer>> CaptionTokenizer(
    const std::map<std::string, std::string>& assets, const data::DataOptions& data, int64_t vocab);

// Token ids and mask [N, max_tokens] of `prompts`.
torch::Tensor TokenizePrompts(const data::Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                              int64_t max_tokens, torch::Tensor* mask);

// The preview grid: four samples of "a photo of {a_class}" per class (or of the batch's
// first captions when the data has no classes), one column per prompt.
absl::Status PreviewPrompts(TextToImage& model, const PreviewData& data, const GenerateOptions& options,
                            const std::string& png_path);

// Prompt accuracy by the judge of `options`, loaded at the first call.
class JudgedEvaluation {
 public:
  JudgedEvaluation(JudgedEvalOptions options, ImageSpec images) : options_(std::move(options)), images_(images) {}
  absl::StatusOr<nlohmann::ordered_json> Run(TextToImage& model, const PreviewData& data);

 private:
  JudgedEvalOptions options_;
  ImageSpec images_;
  std::optional<eval::Judge> judge_;
};

// What a denoising stage denoises: a frozen VAE's latents (stage.vae) or pixels.
struct DenoisedSpace {
  std::shared_ptr<Stage> vae;  // null: pixels
  int64_t channels = 1;        // of what the network sees
  int64_t size = 32;           // its side
  ImageSpec images;            // what the stage makes
};
struct StageInputs;
// From `vae_option` (the path stage.vae names, or empty) and the loaded dependency "vae".
absl::StatusOr<DenoisedSpace> ResolveDenoisedSpace(const StageInputs& inputs, const std::string& vae_option);

// The diffusion section of an export's description.
nlohmann::ordered_json DescribeDiffusion(const diffusion::DiffusionOptions& options);

// The refusal when train.eval_every asks for an evaluation no judge was named for.
absl::Status CheckJudgeNamed(const JudgedEvalOptions& eval, int64_t eval_every);

}  // namespace loom::stages

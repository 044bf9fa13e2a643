// The text-to-video DiT stage (`stage.kind: video_dit`): captions -> text encoder ->
// spatio-temporal DiT (models/video_dit.h) on the latents of a frozen causal video VAE
// (`stage.vae`, a video_vae export; data.train a cache made by `loom data encode --with`
// it), by default under a rectified flow. Because the VAE is causal, the first k latent
// frames of a clip are the latents of its first 1 + (k - 1) s frames: each step trains
// on one bucket of latent frame counts (`frame_buckets`, drawn per step from the run
// seed, so every rank takes the same bucket and a resumed run the same ones), cutting
// every clip of the batch to it; a bucket of 1 trains on single images. Sampled clips
// are decoded by the VAE; previews are a PNG strip and an animated GIF.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config/schema.h"
#include "data/tokenizer.h"
#include "diffusion/options.h"
#include "diffusion/process.h"
#include "models/options.h"
#include "models/text_encoder.h"
#include "models/video_dit.h"
#include "stages/denoising.h"
#include "stages/stage.h"

namespace loom::stages {

struct VideoDiTStageOptions {
  models::DiTOptions model;
  std::string attention = "full";  // full | factorized
  diffusion::DiffusionOptions diffusion;
  std::string vae = "";            // a video_vae export (required)
  // Latent frame counts a step may train on (each at most the cached clips'), and their
  // weights; empty: the full clips only.
  std::vector<int> frame_buckets;
  std::vector<double> bucket_weights;
  double caption_noise = 0.0;
  int preview_steps = 30;
  double preview_cfg = 4.0;

  VideoDiTStageOptions();
  static void Describe(config::Fields<VideoDiTStageOptions>& f);
};

class VideoDiTStage : public Stage, public TextToVideo {
 public:
  VideoDiTStage(const VideoDiTStageOptions& options, const models::VideoDiTConfig& config, int max_tokens,
                std::shared_ptr<const diffusion::Process> diffusion, std::shared_ptr<const data::Tokenizer> tokenizer,
                std::shared_ptr<Stage> vae, int64_t latent_frames, double caption_dropout);

  std::string kind() const override { return "video_dit"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  nlohmann::ordered_json Describe() const override;
  double ForwardFlops(int64_t batch) const override;
  std::map<std::string, std::string> Assets() const override;
  TextToVideo* AsTextToVideo() override { return this; }

  // TextToVideo
  ImageSpec image_spec() const override;
  int64_t frames() const override;
  absl::Status CheckFrames(int64_t frames) const override;
  absl::StatusOr<torch::Tensor> GenerateClips(const std::vector<std::string>& prompts, const GenerateOptions& options,
                                              int64_t frames) override;

  // The latent frame count step `step` trains on.
  int64_t BucketFrames(uint64_t seed, int64_t step) const;
  // Normalised latents [B, z, t, h, w] for token rows, by the process's sampler with
  // classifier-free guidance against the empty caption; row i's noise from (seed, i).
  torch::Tensor Sample(const torch::Tensor& tokens, const torch::Tensor& mask, double cfg, int steps, uint64_t seed,
                       int64_t latent_frames);

  train::OptimOptions optim;
  double ema = 0;

  VideoDiTStageOptions options;
  models::VideoDiTConfig config;
  int max_tokens;
  models::TextEncoder text{nullptr};
  models::VideoDiT dit{nullptr};
  std::shared_ptr<const diffusion::Process> diffusion;

 private:
  diffusion::Denoiser Bind(const torch::Tensor& tokens, const torch::Tensor& mask);
  torch::Device device() const { return dit->final_linear->weight.device(); }

  std::shared_ptr<const data::Tokenizer> tokenizer_;
  std::shared_ptr<Stage> vae_;
  VideoAutoencoder* video_ = nullptr;  // vae_'s
  int64_t latent_frames_;              // of the cached clips
  double caption_dropout_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeVideoDiTStage(const StageInputs& inputs);

}  // namespace loom::stages

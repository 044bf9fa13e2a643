// The causal video VAE stage (`stage.kind: video_vae`): models/video_vae.h trained as the
// image VAE is, per frame: L1 (or L2) summed over each frame's pixels and averaged over
// frames and clips, plus kl_weight x the KL per frame. A share of the steps
// (`image_share`, the same steps on every rank) trains on single frames, one drawn from
// each clip, so the model also encodes images (a one-frame clip). The export carries the
// per-channel shift and scale of the latents measured on the training clips; its preview
// shows input frames above their reconstructions; its evaluation is per-frame PSNR and
// SSIM on data.test clips, the first frame apart, and flicker.
#pragma once

#include <torch/torch.h>

#include <string>

#include "core/config/schema.h"
#include "models/options.h"
#include "models/video_vae.h"
#include "stages/stage.h"
#include "stages/vae_stage.h"  // VaeLossOptions, VaeEvalOptions
#include "train/options.h"

namespace loom::stages {

struct VideoVaeStageOptions {
  models::VideoVaeOptions model;
  VaeLossOptions loss;
  double image_share = 0.25;  // share of steps that train on single frames
  VaeEvalOptions eval;        // eval.samples: held-out clips
  int64_t calibration_samples = 1024;  // training clips the latent shift and scale are measured on

  static void Describe(config::Fields<VideoVaeStageOptions>& f);
};

class VideoVaeStage : public Stage, public VideoAutoencoder, public CacheProducer {
 public:
  // `frames`: of the training clips (checked by the maker).
  VideoVaeStage(const VideoVaeStageOptions& options, ImageSpec images, int64_t frames);

  std::string kind() const override { return "video_vae"; }
  std::vector<Trainable> Trainables() override;
  DataNeeds Needs() const override;
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  absl::StatusOr<nlohmann::ordered_json> Evaluate(const PreviewData& data) override;
  int64_t calibration_samples() const override { return options.calibration_samples; }
  absl::StatusOr<nlohmann::ordered_json> Calibrate(data::Loader& loader, int64_t batches) override;
  absl::Status SetCalibration(const nlohmann::json& calibration) override;
  nlohmann::ordered_json calibration() const override { return calibration_; }
  double ForwardFlops(int64_t batch) const override;
  nlohmann::ordered_json Describe() const override;
  VideoAutoencoder* AsVideoAutoencoder() override { return this; }
  CacheProducer* AsCacheProducer() override { return this; }

  // VideoAutoencoder
  ImageSpec image_spec() const override { return images_; }
  int64_t temporal_factor() const override { return models::VideoVaeTemporalFactor(options.model); }
  int64_t spatial_factor() const override { return models::VideoVaeSpatialFactor(options.model); }
  int64_t z_channels() const override { return options.model.z_channels; }
  absl::Status CheckFrames(int64_t frames) const override { return models::CheckVideoFrames(options.model, frames); }
  torch::Tensor latent_shift() const override { return shift_; }
  torch::Tensor latent_scale() const override { return scale_; }
  torch::Tensor EncodeClips(const torch::Tensor& clips) override;
  torch::Tensor DecodeClips(const torch::Tensor& latents) override;

  // CacheProducer: "latents", the posterior's moments [2z, t, h, w] per clip.
  std::vector<CacheField> CacheFields() const override;
  bool needs_pixels() const override { return true; }
  ImageSpec input_spec() const override { return images_; }
  bool reads_clips() const override { return true; }
  // The cache's shape is that of clips of the export's data.frames.
  absl::Status CheckSourceFrames(int64_t frames) const override;
  std::map<std::string, torch::Tensor> EncodeBatch(const data::Batch& batch) override;

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  VideoVaeStageOptions options;
  models::VideoAutoencoder vae{nullptr};

 private:
  torch::Device device() const { return vae->quant_conv->weight.device(); }

  ImageSpec images_;
  int64_t frames_;
  torch::Tensor shift_, scale_;  // [z]: 0 and 1 until calibrated
  nlohmann::ordered_json calibration_ = nlohmann::ordered_json::object();
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeVideoVaeStage(const StageInputs& inputs);

}  // namespace loom::stages

// The KL-VAE stage (`stage.kind: vae`), after latent diffusion's AutoencoderKL and its
// LPIPSWithDiscriminator loss without the perceptual term: reconstruction (L1 or L2,
// summed over pixels, averaged over the batch) + kl_weight x KL of the diagonal Gaussian
// posterior, and, from disc.start on, a patch discriminator with a hinge loss trained by
// its own optimizer (the stage's second trainable), whose adversarial term enters the
// reconstruction loss with latent diffusion's adaptive weight. Its export carries the
// latent scale (1 / std of the latents on the training data), which latent stages
// multiply latents by; its preview shows inputs above their reconstructions; its
// evaluation is PSNR and SSIM on data.test.
#pragma once

#include <torch/torch.h>

#include <string>

#include "core/config/schema.h"
#include "eval/reconstruction.h"
#include "models/options.h"
#include "models/vae.h"
#include "stages/stage.h"
#include "train/options.h"

namespace loom::stages {

struct VaeLossOptions {
  std::string recon = "l1";  // l1 | l2, per pixel, summed over the image
  double kl_weight = 1e-6;

  static void Describe(config::Fields<VaeLossOptions>& f);
};

struct VaeDiscOptions {
  bool enabled = false;
  int64_t start = 50001;  // first step (from 0) at which it trains and its term counts
  int64_t every = 1;
  double weight = 0.5;    // of the adversarial term, times the adaptive weight
  bool adaptive = true;   // scale the term to match the reconstruction's gradient at the last layer
  models::DiscriminatorOptions model;
  train::OptimOptions optim;

  VaeDiscOptions();
  static void Describe(config::Fields<VaeDiscOptions>& f);
};

struct VaeEvalOptions {
  int64_t samples = 1000;  // images of data.test for PSNR and SSIM (0 = all)

  static void Describe(config::Fields<VaeEvalOptions>& f);
};

struct VaeStageOptions {
  models::VaeOptions model;
  VaeLossOptions loss;
  VaeDiscOptions disc;
  VaeEvalOptions eval;
  int64_t calibration_samples = 4096;  // training images the latent scale is measured on

  static void Describe(config::Fields<VaeStageOptions>& f);
};

class VaeStage : public Stage, public Autoencoder, public CacheProducer {
 public:
  VaeStage(const VaeStageOptions& options, ImageSpec images);

  std::string kind() const override { return "vae"; }
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
  Autoencoder* AsAutoencoder() override { return this; }
  CacheProducer* AsCacheProducer() override { return this; }

  // Autoencoder
  ImageSpec image_spec() const override { return images_; }
  std::vector<int64_t> latent_shape() const override;
  double latent_scale() const override { return latent_scale_; }
  torch::Tensor Encode(const torch::Tensor& images) override;
  torch::Tensor Decode(const torch::Tensor& latents) override;

  // CacheProducer: "latents", the posterior's moments [2z, h, w] per image.
  std::vector<CacheField> CacheFields() const override;
  bool needs_pixels() const override { return true; }
  ImageSpec input_spec() const override { return images_; }
  std::map<std::string, torch::Tensor> EncodeBatch(const data::Batch& batch) override;

  // Set by the maker from the config: the main trainable's settings.
  train::OptimOptions optim;
  double ema = 0;

  VaeStageOptions options;
  models::AutoencoderKL vae{nullptr};
  models::PatchDiscriminator disc{nullptr};  // null unless disc.enabled

 private:
  LossResult AutoencoderLoss(const data::Batch& batch, const StepContext& ctx);
  LossResult DiscriminatorLoss(const data::Batch& batch, const StepContext& ctx);

  ImageSpec images_;
  double latent_scale_ = 1.0;
  nlohmann::ordered_json calibration_ = nlohmann::ordered_json::object();
  // The last autoencoder phase's reconstructions (detached) and batch, for the
  // discriminator phase of the same step.
  torch::Tensor last_recon_, last_ids_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeVaeStage(const StageInputs& inputs);

// What both autoencoder stages evaluate: reconstructions of `limit` samples of data.test,
// read at the stage's image spec. An error names the stage `kind` and its `samples`
// (images, clips) when the run has no test split.
absl::StatusOr<eval::ReconstructionEvalOptions> HeldOutReconstruction(const PreviewData& data, const ImageSpec& images,
                                                                      int64_t limit, const std::string& kind,
                                                                      const std::string& samples);

}  // namespace loom::stages

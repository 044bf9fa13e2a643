// Gaussian diffusion (DDPM/DDIM): noise schedules, the forward process q_sample, the
// training objective for eps / v / x0 prediction with uniform or min-SNR weighting,
// and DDIM/DDPM samplers with the step count chosen at sampling time and
// classifier-free guidance. It is handed the network as a function; the network knows
// nothing of diffusion.
//
//   GaussianDiffusion diffusion(options);
//   torch::Tensor loss = diffusion.training_losses(denoiser, x0, t, noise);   // [B]
//   torch::Tensor x = diffusion.Sample(Guided(cond, uncond, 4.0), shape, {.steps = 50});
#pragma once

#include <torch/torch.h>

#include <functional>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "diffusion/options.h"
#include "diffusion/process.h"  // Denoiser, Guided, SampleOptions

namespace loom::diffusion {

// abar_t (cumulative product of 1 - beta) for t = 0..T-1, float64.
absl::StatusOr<torch::Tensor> AlphasCumprod(const std::string& schedule, int timesteps);

// x0 [B, ...] under dynamic thresholding at percentile p (SampleOptions).
torch::Tensor DynamicThreshold(const torch::Tensor& x0, double p);

class GaussianDiffusion : public Process {
 public:
  // Fails on an unknown schedule or prediction (the config validates these first).
  static absl::StatusOr<GaussianDiffusion> Create(const DiffusionOptions& options);

  int timesteps() const { return timesteps_; }
  const DiffusionOptions& options() const { return options_; }
  const torch::Tensor& alphas_cumprod() const { return abar_; }

  // x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.
  torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& t,
                         const torch::Tensor& noise) const;
  // What the network is trained to output for (x0, noise, t).
  torch::Tensor Target(const torch::Tensor& x0, const torch::Tensor& t,
                       const torch::Tensor& noise) const;
  // Per-sample loss weight: 1, or min-SNR-gamma expressed for the prediction type.
  torch::Tensor LossWeight(const torch::Tensor& t) const;
  // Per-sample weighted mean squared error [B] (float32).
  torch::Tensor training_losses(const Denoiser& model, const torch::Tensor& x0,
                                const torch::Tensor& t, const torch::Tensor& noise) const override;

  // x0 and eps implied by a prediction at (x_t, t).
  void Interpret(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& prediction,
                 torch::Tensor* x0, torch::Tensor* eps) const;

  // Generates from pure noise `noise` (shape [B, ...]); DDIM with eta = 0, DDPM with 1.
  torch::Tensor Sample(const Denoiser& model, const torch::Tensor& noise,
                       const SampleOptions& options, torch::Generator* generator = nullptr) const override;

  std::string name() const override { return "gaussian"; }
  torch::ScalarType time_dtype() const override { return torch::kLong; }
  // Uniform over [0, timesteps); `tokens` does not matter.
  torch::Tensor DrawTime(at::Generator& gen, int64_t tokens) const override;

 private:
  GaussianDiffusion(DiffusionOptions options, torch::Tensor abar);
  // abar at `t` shaped to broadcast against x ([B, 1, 1, ...]), float32 on x's device.
  torch::Tensor At(const torch::Tensor& values, const torch::Tensor& t, const torch::Tensor& x) const;

  DiffusionOptions options_;
  int timesteps_;
  torch::Tensor abar_;  // float64 [T]
};

}  // namespace loom::diffusion

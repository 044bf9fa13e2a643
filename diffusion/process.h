// The process a denoising stage trains and samples with, behind one interface: Gaussian
// diffusion (DDPM/DDIM, diffusion/gaussian_diffusion.h) or a rectified flow
// (diffusion/rectified_flow.h). `diffusion.process` in a config picks one; a stage holds
// a Process and never asks which.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<const Process> p, MakeProcess(options.diffusion));
//   t[i] = p->DrawTime(gen, tokens);                         // per sample, from its generator
//   torch::Tensor loss = p->training_losses(denoiser, x0, t, noise);      // [B]
//   torch::Tensor x = p->Sample(Guided(cond, uncond, 4.0), noise, {.steps = 50, .tokens = n});
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "diffusion/options.h"

namespace loom::diffusion {

// The network as a process sees it: f(x_t, t) -> its prediction, with whatever
// conditioning the caller bound into it. t [B] is the process's model time: an int64
// timestep in [0, timesteps) (Gaussian) or a float in [0, 1000] (flow).
using Denoiser = std::function<torch::Tensor(const torch::Tensor& x_t, const torch::Tensor& t)>;

// Classifier-free guidance: uncond + scale * (cond - uncond) on the prediction.
Denoiser Guided(Denoiser cond, Denoiser uncond, double scale);

struct SampleOptions {
  int steps = 50;          // network evaluations (any number up to the process's timesteps)
  double eta = 0.0;        // Gaussian: 0 DDIM (deterministic), 1 DDPM (ancestral)
  bool clip_x0 = true;     // clamp the predicted x0 to [-1, 1] (pixels; not latents)
  // Gaussian, in place of the static clip when in (0, 1): Imagen's dynamic thresholding
  // (per sample, s = max(1, the p-quantile of |x0|); x0 clamped to [-s, s], divided by s).
  double dynamic_threshold = 0;
  int64_t tokens = 0;      // flow: tokens per sample, for the time shift (0: no shift)
};

class Process {
 public:
  virtual ~Process() = default;

  virtual std::string name() const = 0;  // "gaussian" | "flow"
  // The dtype of training times (int64 or float32).
  virtual torch::ScalarType time_dtype() const = 0;
  // One sample's training time, drawn from `gen`, for a sample of `tokens` tokens.
  virtual torch::Tensor DrawTime(at::Generator& gen, int64_t tokens) const = 0;
  // Per-sample weighted mean squared error [B] (float32) of `model` at times `t`.
  virtual torch::Tensor training_losses(const Denoiser& model, const torch::Tensor& x0, const torch::Tensor& t,
                                        const torch::Tensor& noise) const = 0;
  // Generates from pure noise `noise` [B, ...].
  virtual torch::Tensor Sample(const Denoiser& model, const torch::Tensor& noise, const SampleOptions& options,
                               torch::Generator* generator = nullptr) const = 0;
};

// The process `options.process` names; fails on unknown names (the config validates them first).
absl::StatusOr<std::shared_ptr<const Process>> MakeProcess(const DiffusionOptions& options);

}  // namespace loom::diffusion

// Rectified flow (Liu et al.; as Stable Diffusion 3 trains it): the straight path
// x_t = (1 - t) x0 + t noise from data (t = 0) to noise (t = 1), a network that predicts
// the velocity v = noise - x0, training times drawn logit-normal and shifted towards
// noise for samples of many tokens (SD3's resolution-dependent shift, alpha =
// sqrt(tokens / shift_tokens): a long clip needs more noise to lose its content than
// one frame), and an Euler sampler over the same shifted times. The network sees
// t * 1000, the scale of Gaussian timesteps, so one timestep embedding serves both.
#pragma once

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "diffusion/options.h"
#include "diffusion/process.h"

namespace loom::diffusion {

inline constexpr double kFlowModelTime = 1000.0;  // the network's time per unit of t

class RectifiedFlow : public Process {
 public:
  static absl::StatusOr<RectifiedFlow> Create(const FlowOptions& options);

  const FlowOptions& options() const { return options_; }
  // The shift alpha for samples of `tokens` tokens: options.shift when set, else
  // sqrt(tokens / shift_tokens); 1 when tokens is 0.
  double Shift(int64_t tokens) const;
  // t -> alpha t / (1 + (alpha - 1) t): monotone, keeps 0 and 1, alpha > 1 moves towards noise.
  static double ShiftTime(double t, double alpha);

  // x_t and the velocity target at times t [B] in [0, 1].
  torch::Tensor Interpolate(const torch::Tensor& x0, const torch::Tensor& t, const torch::Tensor& noise) const;
  torch::Tensor Target(const torch::Tensor& x0, const torch::Tensor& noise) const { return noise - x0; }

  std::string name() const override { return "flow"; }
  torch::ScalarType time_dtype() const override { return torch::kFloat32; }
  // sigmoid(logit_mean + logit_std n), n ~ N(0, 1) from `gen`, then shifted for `tokens`.
  torch::Tensor DrawTime(at::Generator& gen, int64_t tokens) const override;
  torch::Tensor training_losses(const Denoiser& model, const torch::Tensor& x0, const torch::Tensor& t,
                                const torch::Tensor& noise) const override;
  // Euler steps from t = 1 to 0 over shift(1 - i / steps); options.clip_x0 clamps the
  // implied x0 (x_t - t v) at each step, as the Gaussian sampler does for pixels.
  torch::Tensor Sample(const Denoiser& model, const torch::Tensor& noise, const SampleOptions& options,
                       torch::Generator* generator = nullptr) const override;

 private:
  explicit RectifiedFlow(FlowOptions options) : options_(std::move(options)) {}
  FlowOptions options_;
};

}  // namespace loom::diffusion

// Rectified flow: straight paths, velocity target, logit-normal times, Euler sampling
// (see rectified_flow.h).
#include "diffusion/rectified_flow.h"

#include <cmath>

namespace loom::diffusion {
namespace {

// t [B] shaped to broadcast against x ([B, 1, 1, ...]), float32 on x's device.
torch::Tensor Broadcast(const torch::Tensor& t, const torch::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return t.to(x.device(), torch::kFloat32).view(shape);
}

}  // namespace

absl::StatusOr<RectifiedFlow> RectifiedFlow::Create(const FlowOptions& options) {
  if (!(options.logit_std > 0)) return absl::InvalidArgumentError("diffusion.flow.logit_std must be positive");
  if (options.shift < 0) return absl::InvalidArgumentError("diffusion.flow.shift must be 0 (by tokens) or positive");
  if (options.shift_tokens <= 0) return absl::InvalidArgumentError("diffusion.flow.shift_tokens must be positive");
  return RectifiedFlow(options);
}

double RectifiedFlow::Shift(int64_t tokens) const {
  if (options_.shift > 0) return options_.shift;
  if (tokens <= 0) return 1.0;
  return std::sqrt(static_cast<double>(tokens) / static_cast<double>(options_.shift_tokens));
}

double RectifiedFlow::ShiftTime(double t, double alpha) { return alpha * t / (1.0 + (alpha - 1.0) * t); }

torch::Tensor RectifiedFlow::Interpolate(const torch::Tensor& x0, const torch::Tensor& t,
                                         const torch::Tensor& noise) const {
  const torch::Tensor tb = Broadcast(t, x0);
  return (1 - tb) * x0 + tb * noise;  // [B, ...]
}

torch::Tensor RectifiedFlow::DrawTime(at::Generator& gen, int64_t tokens) const {
  const double n = torch::randn({1}, gen, torch::kFloat64).item<double>();
  const double t = 1.0 / (1.0 + std::exp(-(options_.logit_mean + options_.logit_std * n)));
  return torch::tensor(static_cast<float>(ShiftTime(t, Shift(tokens))), torch::kFloat32);
}

torch::Tensor RectifiedFlow::training_losses(const Denoiser& model, const torch::Tensor& x0, const torch::Tensor& t,
                                             const torch::Tensor& noise) const {
  const torch::Tensor x_t = Interpolate(x0, t, noise);
  const torch::Tensor v = model(x_t, t.to(x0.device(), torch::kFloat32) * kFlowModelTime);  // [B, ...]
  return (v.to(torch::kFloat32) - Target(x0, noise)).pow(2).flatten(1).mean(1);            // [B]
}

torch::Tensor RectifiedFlow::Sample(const Denoiser& model, const torch::Tensor& noise, const SampleOptions& o,
                                    torch::Generator* /*generator: the sampler is deterministic*/) const {
  torch::NoGradGuard no_grad;
  const int steps = std::max(1, o.steps);
  const double alpha = Shift(o.tokens);
  torch::Tensor x = noise.to(torch::kFloat32);
  const int64_t batch = x.size(0);
  for (int i = 0; i < steps; ++i) {
    const double t = ShiftTime(1.0 - static_cast<double>(i) / steps, alpha);
    const double t_next = ShiftTime(1.0 - static_cast<double>(i + 1) / steps, alpha);
    const torch::Tensor tt =
        torch::full({batch}, t * kFlowModelTime, torch::TensorOptions(torch::kFloat32).device(x.device()));
    const torch::Tensor v = model(x, tt).to(torch::kFloat32);
    // The Euler step x + (t_next - t) v, written through the implied clean sample and
    // noise so that x0 can be clamped: x0 = x - t v, noise = x + (1 - t) v.
    torch::Tensor x0 = x - t * v;
    if (o.clip_x0) x0 = x0.clamp(-1, 1);
    const torch::Tensor eps = x + (1 - t) * v;
    x = (1 - t_next) * x0 + t_next * eps;
  }
  return x;
}

}  // namespace loom::diffusion

// Schedules, objectives and samplers of Gaussian diffusion (see gaussian_diffusion.h).
#include "diffusion/gaussian_diffusion.h"

#include <cmath>

namespace loom::diffusion {

absl::StatusOr<torch::Tensor> AlphasCumprod(const std::string& schedule, int timesteps) {
  if (timesteps < 2) return absl::InvalidArgumentError("diffusion needs at least 2 timesteps");
  const auto f64 = torch::TensorOptions(torch::kFloat64);
  if (schedule == "linear") {
    // DDPM's betas 1e-4..0.02 for 1000 steps, scaled so other step counts keep the same
    // end points of the process (improved DDPM).
    const double scale = 1000.0 / timesteps;
    const torch::Tensor betas =
        torch::linspace(scale * 1e-4, scale * 0.02, timesteps, f64).clamp_max(0.999);
    return torch::cumprod(1.0 - betas, 0);
  }
  if (schedule == "cosine") {
    // Nichol & Dhariwal: abar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), betas capped at 0.999.
    const double s = 0.008;
    const auto f = [&](double t) {
      const double c = std::cos((t / timesteps + s) / (1 + s) * M_PI / 2);
      return c * c;
    };
    torch::Tensor betas = torch::empty({timesteps}, f64);
    auto b = betas.accessor<double, 1>();
    for (int i = 0; i < timesteps; ++i) b[i] = std::min(1.0 - f(i + 1) / f(i), 0.999);
    return torch::cumprod(1.0 - betas, 0);
  }
  return absl::InvalidArgumentError("unknown noise schedule '" + schedule + "' (linear or cosine)");
}

absl::StatusOr<GaussianDiffusion> GaussianDiffusion::Create(const DiffusionOptions& options) {
  if (options.prediction != "eps" && options.prediction != "v" && options.prediction != "x0") {
    return absl::InvalidArgumentError("unknown prediction '" + options.prediction + "' (eps, v or x0)");
  }
  if (options.loss_weight != "uniform" && options.loss_weight != "min_snr") {
    return absl::InvalidArgumentError("unknown loss weight '" + options.loss_weight + "'");
  }
  ASSIGN_OR_RETURN(torch::Tensor abar, AlphasCumprod(options.schedule, options.timesteps));
  return GaussianDiffusion(options, abar);
}

GaussianDiffusion::GaussianDiffusion(DiffusionOptions options, torch::Tensor abar)
    : options_(std::move(options)), timesteps_(options_.timesteps), abar_(std::move(abar)) {}

torch::Tensor GaussianDiffusion::At(const torch::Tensor& values, const torch::Tensor& t,
                                    const torch::Tensor& x) const {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return values.index_select(0, t.to(torch::kCPU, torch::kLong))
      .to(x.device(), torch::kFloat32)
      .view(shape);
}

torch::Tensor GaussianDiffusion::DrawTime(at::Generator& gen, int64_t /*tokens*/) const {
  return torch::randint(0, timesteps_, {1}, gen, torch::kLong)[0];
}

torch::Tensor GaussianDiffusion::q_sample(const torch::Tensor& x0, const torch::Tensor& t,
                                          const torch::Tensor& noise) const {
  const torch::Tensor a = At(abar_, t, x0);
  return a.sqrt() * x0 + (1 - a).sqrt() * noise;  // [B, ...]
}

torch::Tensor GaussianDiffusion::Target(const torch::Tensor& x0, const torch::Tensor& t,
                                        const torch::Tensor& noise) const {
  if (options_.prediction == "eps") return noise;
  if (options_.prediction == "x0") return x0;
  const torch::Tensor a = At(abar_, t, x0);
  return a.sqrt() * noise - (1 - a).sqrt() * x0;  // v
}

torch::Tensor GaussianDiffusion::LossWeight(const torch::Tensor& t) const {
  const int64_t n = t.size(0);
  if (options_.loss_weight == "uniform") return torch::ones({n}, torch::kFloat32).to(t.device());
  // min-SNR-gamma (Hang et al.): the x0-space weight min(SNR, gamma), expressed for what
  // the network predicts: / SNR for eps, / (SNR + 1) for v.
  const torch::Tensor a = abar_.index_select(0, t.to(torch::kCPU, torch::kLong));
  const torch::Tensor snr = a / (1 - a);
  torch::Tensor w = torch::clamp_max(snr, options_.snr_gamma);
  if (options_.prediction == "eps") w = w / snr;
  if (options_.prediction == "v") w = w / (snr + 1);
  return w.to(t.device(), torch::kFloat32);
}

torch::Tensor GaussianDiffusion::training_losses(const Denoiser& model, const torch::Tensor& x0,
                                                 const torch::Tensor& t,
                                                 const torch::Tensor& noise) const {
  const torch::Tensor x_t = q_sample(x0, t, noise);
  const torch::Tensor prediction = model(x_t, t);  // [B, ...]
  const torch::Tensor target = Target(x0, t, noise);
  const torch::Tensor mse = (prediction.to(torch::kFloat32) - target).pow(2).flatten(1).mean(1);  // [B]
  return mse * LossWeight(t);
}

void GaussianDiffusion::Interpret(const torch::Tensor& x_t, const torch::Tensor& t,
                                  const torch::Tensor& prediction, torch::Tensor* x0,
                                  torch::Tensor* eps) const {
  const torch::Tensor a = At(abar_, t, x_t);
  const torch::Tensor sa = a.sqrt(), sb = (1 - a).sqrt();
  const torch::Tensor p = prediction.to(torch::kFloat32);
  if (options_.prediction == "eps") {
    *eps = p;
    *x0 = (x_t - sb * p) / sa;
  } else if (options_.prediction == "x0") {
    *x0 = p;
    *eps = (x_t - sa * p) / sb;
  } else {
    *x0 = sa * x_t - sb * p;
    *eps = sb * x_t + sa * p;
  }
}

torch::Tensor DynamicThreshold(const torch::Tensor& x0, double p) {
  const int64_t B = x0.size(0);
  const torch::Tensor s = torch::quantile(x0.abs().reshape({B, -1}), p, /*dim=*/1).clamp_min(1);  // [B]
  std::vector<int64_t> shape(x0.dim(), 1);
  shape[0] = B;
  const torch::Tensor bound = s.view(shape);  // [B, 1, ...]
  return torch::max(torch::min(x0, bound), -bound) / bound;
}

torch::Tensor GaussianDiffusion::Sample(const Denoiser& model, const torch::Tensor& noise,
                                        const SampleOptions& o, torch::Generator* generator) const {
  torch::NoGradGuard no_grad;
  const int steps = std::clamp(o.steps, 1, timesteps_);
  // Evenly spaced timesteps from T-1 down to 0; each step jumps to the next one below.
  std::vector<int64_t> ts(steps);
  for (int i = 0; i < steps; ++i) {
    ts[i] = static_cast<int64_t>(std::llround(static_cast<double>(i) * (timesteps_ - 1) / std::max(1, steps - 1)));
  }
  if (steps == 1) ts[0] = timesteps_ - 1;
  const auto abar = abar_.accessor<double, 1>();
  torch::Tensor x = noise.to(torch::kFloat32);
  const int64_t batch = x.size(0);
  for (int i = steps - 1; i >= 0; --i) {
    const int64_t t = ts[i];
    const torch::Tensor tt = torch::full({batch}, t, torch::TensorOptions(torch::kLong).device(x.device()));
    torch::Tensor x0, eps;
    Interpret(x, tt, model(x, tt), &x0, &eps);
    if (o.dynamic_threshold > 0 || o.clip_x0) {
      x0 = o.dynamic_threshold > 0 ? DynamicThreshold(x0, o.dynamic_threshold) : x0.clamp(-1, 1);
      const double a = abar[t];
      eps = (x - std::sqrt(a) * x0) / std::sqrt(1 - a);  // consistent with the clamped x0
    }
    const double a = abar[t];
    const double a_prev = i > 0 ? abar[ts[i - 1]] : 1.0;
    // DDIM's update; eta = 1 gives the ancestral (DDPM) posterior of the respaced process.
    const double sigma = o.eta * std::sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev));
    x = std::sqrt(a_prev) * x0 + std::sqrt(std::max(0.0, 1 - a_prev - sigma * sigma)) * eps;
    if (sigma > 0 && i > 0) {
      torch::Tensor z = generator != nullptr
                            ? torch::randn(x.sizes(), *generator, x.options())
                            : torch::randn(x.sizes(), x.options());
      x = x + sigma * z;
    }
  }
  return x;
}

}  // namespace loom::diffusion

// Guidance and the choice of process (see process.h).
#include "diffusion/process.h"

#include "core/status.h"
#include "diffusion/gaussian_diffusion.h"
#include "diffusion/rectified_flow.h"

namespace loom::diffusion {

Denoiser Guided(Denoiser cond, Denoiser uncond, double scale) {
  return [cond = std::move(cond), uncond = std::move(uncond), scale](const torch::Tensor& x,
                                                                      const torch::Tensor& t) {
    const torch::Tensor c = cond(x, t);
    const torch::Tensor u = uncond(x, t);
    return u + scale * (c - u);
  };
}

absl::StatusOr<std::shared_ptr<const Process>> MakeProcess(const DiffusionOptions& options) {
  if (options.process == "gaussian") {
    ASSIGN_OR_RETURN(GaussianDiffusion g, GaussianDiffusion::Create(options));
    return std::make_shared<const GaussianDiffusion>(std::move(g));
  }
  if (options.process == "flow") {
    ASSIGN_OR_RETURN(RectifiedFlow f, RectifiedFlow::Create(options.flow));
    return std::make_shared<const RectifiedFlow>(std::move(f));
  }
  return absl::InvalidArgumentError("unknown diffusion.process '" + options.process + "' (gaussian or flow)");
}

}  // namespace loom::diffusion

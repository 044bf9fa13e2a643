// PSNR and SSIM of reconstructions (see reconstruction.h).
#include "eval/reconstruction.h"

#include <chrono>
#include <cmath>
#include <limits>

#include "data/loader.h"

namespace loom::eval {
namespace {

// [-1, 1] -> the 8-bit picture's values in [0, 1], float64.
torch::Tensor EightBit(const torch::Tensor& x) {
  return ((x.detach().to(torch::kCPU, torch::kFloat64) + 1) * 127.5).round().clamp(0, 255) / 255.0;
}

// The largest batch <= `most` that divides `total`, so an epoch holds every sample.
}  // namespace

int64_t DividingBatch(int64_t total, int64_t most) {
  for (int64_t b = std::min(total, most); b > 1; --b) {
    if (total % b == 0) return b;
  }
  return 1;
}

torch::Tensor Psnr(const torch::Tensor& real, const torch::Tensor& fake) {
  const torch::Tensor mse = (EightBit(real) - EightBit(fake)).pow(2).flatten(1).mean(1);  // [B]
  return -10.0 * torch::log10(mse);  // peak 1: 10 log10(1 / mse); +inf where equal
}

torch::Tensor Ssim(const torch::Tensor& real, const torch::Tensor& fake) {
  const torch::Tensor x = EightBit(real), y = EightBit(fake);
  const int64_t C = x.size(1);
  TORCH_CHECK(x.size(2) >= 11 && x.size(3) >= 11, "SSIM needs images of at least 11x11");
  const torch::Tensor g = torch::exp(-torch::arange(-5, 6, torch::kFloat64).pow(2) / (2 * 1.5 * 1.5));
  const torch::Tensor g1 = g / g.sum();
  const torch::Tensor window = torch::outer(g1, g1).expand({C, 1, 11, 11}).contiguous();  // depthwise
  const auto filter = [&](const torch::Tensor& t) {
    return torch::nn::functional::conv2d(t, window, torch::nn::functional::Conv2dFuncOptions().groups(C));
  };
  const torch::Tensor mx = filter(x);
  const torch::Tensor my = filter(y);
  const torch::Tensor sxx = filter(x * x) - mx * mx;
  const torch::Tensor syy = filter(y * y) - my * my;
  const torch::Tensor sxy = filter(x * y) - mx * my;
  constexpr double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const torch::Tensor map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return map.flatten(1).mean(1);  // [B]
}

nlohmann::ordered_json ReconstructionResult::ToJson() const {
  return {{"psnr", psnr}, {"ssim", ssim}, {"images", images}, {"seconds", seconds}};
}

absl::StatusOr<EvalImages> OpenEvalImages(const std::string& dir, int64_t image_size, int64_t channels,
                                          const std::string& fit, int64_t limit, int64_t most, uint64_t seed,
                                          int workers) {
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(dir));
  EvalImages e;
  e.label_names = manifest.label_names;
  e.has_labels = manifest.has_labels;
  e.total = limit > 0 ? std::min(limit, manifest.total) : manifest.total;
  e.batch = DividingBatch(e.total, most);
  data::LoaderOptions lo;
  lo.dir = dir;
  lo.batch = e.batch;
  lo.workers = workers;
  lo.image_size = static_cast<int>(image_size);
  lo.channels = static_cast<int>(channels);
  lo.fit = fit;
  ASSIGN_OR_RETURN(e.loader, data::Loader::Create(lo, {0, 0, seed}));
  return e;
}

absl::StatusOr<ReconstructionResult> EvaluateReconstruction(const Reconstructor& reconstruct,
                                                            const ReconstructionEvalOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(EvalImages images, OpenEvalImages(o.data, o.image_size, o.channels, o.fit, o.limit, o.batch,
                                                    o.seed, o.workers));
  ReconstructionResult r;
  double psnr_sum = 0, ssim_sum = 0;
  torch::NoGradGuard no_grad;
  for (int64_t done = 0; done + images.batch <= images.total; done += images.batch) {
    ASSIGN_OR_RETURN(data::Batch batch, images.loader->Next());
    const torch::Tensor fake = reconstruct(batch.pixels).to(torch::kCPU);
    if (fake.sizes() != batch.pixels.sizes()) {
      return absl::InternalError("the reconstructions have shape " + c10::str(fake.sizes()) + ", the images " +
                                 c10::str(batch.pixels.sizes()));
    }
    // An exact reconstruction has infinite PSNR; count it at 100 dB, far above any real one.
    psnr_sum += Psnr(batch.pixels, fake).clamp_max(100.0).sum().item<double>();
    ssim_sum += Ssim(batch.pixels, fake).sum().item<double>();
    r.images += batch.pixels.size(0);
  }
  if (r.images == 0) return absl::InvalidArgumentError(o.data + " has no images to evaluate");
  r.psnr = psnr_sum / static_cast<double>(r.images);
  r.ssim = ssim_sum / static_cast<double>(r.images);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

nlohmann::ordered_json ClipReconstructionResult::ToJson() const {
  return {{"psnr", psnr},
          {"ssim", ssim},
          {"first_psnr", first_psnr},
          {"first_ssim", first_ssim},
          {"later_psnr", later_psnr},
          {"later_ssim", later_ssim},
          {"psnr_per_frame", psnr_per_frame},
          {"flicker", flicker},
          {"flicker_real", flicker_real},
          {"clips", clips},
          {"frames", frames},
          {"seconds", seconds}};
}

absl::StatusOr<ClipReconstructionResult> EvaluateClipReconstruction(const ClipReconstructor& reconstruct,
                                                                    const ReconstructionEvalOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(EvalImages clips, OpenEvalImages(o.data, o.image_size, o.channels, o.fit, o.limit, o.batch,
                                                   o.seed, o.workers));
  ClipReconstructionResult r;
  torch::Tensor psnr_sum, ssim_sum;  // [T] float64
  double flicker_sum = 0, flicker_real_sum = 0;
  torch::NoGradGuard no_grad;
  for (int64_t done = 0; done + clips.batch <= clips.total; done += clips.batch) {
    ASSIGN_OR_RETURN(data::Batch batch, clips.loader->Next());
    const torch::Tensor& real = batch.pixels;
    if (real.dim() != 5) {
      return absl::InvalidArgumentError(o.data + " holds images, not clips; evaluate an image autoencoder on it");
    }
    const torch::Tensor fake = reconstruct(real).to(torch::kCPU);
    if (fake.sizes() != real.sizes()) {
      return absl::InternalError("the reconstructions have shape " + c10::str(fake.sizes()) + ", the clips " +
                                 c10::str(real.sizes()));
    }
    const int64_t B = real.size(0), T = real.size(1);
    const auto frames = [&](const torch::Tensor& x) { return x.reshape({B * T, x.size(2), x.size(3), x.size(4)}); };
    // An exact frame has infinite PSNR; count it at 100 dB, far above any real one.
    const torch::Tensor p = Psnr(frames(real), frames(fake)).clamp_max(100.0).view({B, T}).sum(0);  // [T]
    const torch::Tensor s = Ssim(frames(real), frames(fake)).view({B, T}).sum(0);
    psnr_sum = psnr_sum.defined() ? psnr_sum + p : p;
    ssim_sum = ssim_sum.defined() ? ssim_sum + s : s;
    if (T > 1) {
      const auto flicker = [&](const torch::Tensor& x) {
        const torch::Tensor e = EightBit(x);
        return (e.narrow(1, 1, T - 1) - e.narrow(1, 0, T - 1)).abs().flatten(1).mean(1).sum().item<double>();
      };
      flicker_sum += flicker(fake);
      flicker_real_sum += flicker(real);
    }
    r.clips += B;
    r.frames = T;
  }
  if (r.clips == 0) return absl::InvalidArgumentError(o.data + " has no clips to evaluate");
  const double n = static_cast<double>(r.clips), T = static_cast<double>(r.frames);
  for (int64_t t = 0; t < r.frames; ++t) r.psnr_per_frame.push_back(psnr_sum[t].item<double>() / n);
  r.psnr = psnr_sum.sum().item<double>() / (n * T);
  r.ssim = ssim_sum.sum().item<double>() / (n * T);
  r.first_psnr = psnr_sum[0].item<double>() / n;
  r.first_ssim = ssim_sum[0].item<double>() / n;
  if (r.frames > 1) {
    r.later_psnr = psnr_sum.narrow(0, 1, r.frames - 1).sum().item<double>() / (n * (T - 1));
    r.later_ssim = ssim_sum.narrow(0, 1, r.frames - 1).sum().item<double>() / (n * (T - 1));
    r.flicker = flicker_sum / n;
    r.flicker_real = flicker_real_sum / n;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace loom::eval

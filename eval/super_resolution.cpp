// Super-resolution against bicubic enlargement (see super_resolution.h).
#include "eval/super_resolution.h"

#include <chrono>

#include "core/rng.h"
#include "data/loader.h"
#include "data/pixels.h"
#include "eval/prompt_eval.h"  // CheckJudgeFits
#include "eval/reconstruction.h"

namespace loom::eval {
namespace {

// Sums of per-image PSNR (an exact image counted at 100 dB) and SSIM.
struct Sums {
  double psnr = 0, ssim = 0;
  void Add(const torch::Tensor& real, const torch::Tensor& fake) {
    psnr += Psnr(real, fake).clamp_max(100.0).sum().item<double>();
    ssim += Ssim(real, fake).sum().item<double>();
  }
  SuperResolutionResult::Figures Mean(int64_t n) const {
    return {psnr / static_cast<double>(n), ssim / static_cast<double>(n)};
  }
};

}  // namespace

nlohmann::ordered_json SuperResolutionResult::ToJson() const {
  nlohmann::ordered_json j = {{"psnr", sample.psnr},
                              {"ssim", sample.ssim},
                              {"psnr_mean_of_samples", mean.psnr},
                              {"ssim_mean_of_samples", mean.ssim},
                              {"psnr_bicubic", bicubic.psnr},
                              {"ssim_bicubic", bicubic.ssim},
                              {"consistency_psnr", consistency},
                              {"consistency_psnr_bicubic", consistency_bicubic}};
  if (judged) {
    j["frechet"] = frechet;
    j["frechet_bicubic"] = frechet_bicubic;
    j["frechet_floor"] = frechet_floor;
  }
  j["images"] = images;
  j["samples"] = samples;
  j["seconds"] = seconds;
  return j;
}

absl::StatusOr<SuperResolutionResult> EvaluateSuperResolution(const Upsampler& upsample,
                                                              const SuperResolutionEvalOptions& o,
                                                              const Judge* judge) {
  const auto started = std::chrono::steady_clock::now();
  if (o.samples < 1) return absl::InvalidArgumentError("super-resolution evaluation needs at least 1 sample per image");
  if (o.low_res < 1 || o.image_size % o.low_res != 0) {
    return absl::InvalidArgumentError("the input side " + std::to_string(o.low_res) + " does not divide the output side " +
                                      std::to_string(o.image_size));
  }
  if (judge != nullptr) RETURN_IF_ERROR(CheckJudgeFits(*judge, o.image_size, o.channels, o.fit));
  ASSIGN_OR_RETURN(EvalImages images, OpenEvalImages(o.data, o.image_size, o.channels, o.fit, o.limit, o.batch,
                                                    o.seed, o.workers));
  SuperResolutionResult r;
  r.samples = o.samples;
  Sums sample, mean, bicubic;
  double consistency = 0, consistency_bicubic = 0;
  std::vector<torch::Tensor> features, bicubic_features;
  torch::NoGradGuard no_grad;
  for (int64_t done = 0, index = 0; done + images.batch <= images.total; done += images.batch, ++index) {
    ASSIGN_OR_RETURN(data::Batch batch, images.loader->Next());
    const torch::Tensor& real = batch.pixels;                      // [B, C, S, S]
    const torch::Tensor low = data::Downsample(real, o.low_res);   // [B, C, s, s]
    const torch::Tensor cubic = data::UpsampleBicubic(low, o.image_size);
    torch::Tensor first, sum;
    for (int k = 0; k < o.samples; ++k) {
      ASSIGN_OR_RETURN(torch::Tensor out,
                       upsample(low, batch.captions, SeedFor(o.seed, static_cast<uint64_t>(index), static_cast<uint64_t>(k))));
      out = out.to(torch::kCPU, torch::kFloat32);
      if (out.sizes() != real.sizes()) {
        return absl::InternalError("the upsampler made images of shape " + c10::str(out.sizes()) + " from inputs " +
                                   c10::str(low.sizes()) + "; expected " + c10::str(real.sizes()));
      }
      if (k == 0) {
        first = out;
        sum = out.clone();
      } else {
        sum += out;
      }
    }
    sample.Add(real, first);
    mean.Add(real, sum / o.samples);
    bicubic.Add(real, cubic);
    consistency += Psnr(low, data::Downsample(first, o.low_res)).clamp_max(100.0).sum().item<double>();
    consistency_bicubic += Psnr(low, data::Downsample(cubic, o.low_res)).clamp_max(100.0).sum().item<double>();
    if (judge != nullptr) {
      features.push_back(judge->Features(first));
      bicubic_features.push_back(judge->Features(cubic));
    }
    r.images += real.size(0);
  }
  if (r.images == 0) return absl::InvalidArgumentError(o.data + " has no images to evaluate");
  r.sample = sample.Mean(r.images);
  r.mean = mean.Mean(r.images);
  r.bicubic = bicubic.Mean(r.images);
  r.consistency = consistency / static_cast<double>(r.images);
  r.consistency_bicubic = consistency_bicubic / static_cast<double>(r.images);
  if (judge != nullptr) {
    r.judged = true;
    r.frechet = FrechetDistance(Stats(torch::cat(features)), judge->test_stats());
    r.frechet_bicubic = FrechetDistance(Stats(torch::cat(bicubic_features)), judge->test_stats());
    const int64_t classes = static_cast<int64_t>(judge->spec().classes.size());
    r.frechet_floor = FrechetDistance(judge->TrainStats(std::max<int64_t>(1, r.images / classes)), judge->test_stats());
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace loom::eval

// How well a super-resolution stage restores held-out images: each test image (as the
// loader gives it at the stage's side) is shrunk to the stage's input side, and from
// that input the stage draws `samples` outputs. Reported beside bicubic enlargement of
// the same input (the baseline a learned upsampler must beat):
//   - PSNR and SSIM (8-bit, eval/reconstruction.h) against the real image, of one
//     sample and of the mean of all samples (which approaches the posterior mean, the
//     best estimate in squared error);
//   - consistency: PSNR of the output shrunk again against the input (an upsampler
//     whose outputs drift from their input is a known complaint);
//   - with a judge at the output side: the Fréchet distance of the judge's features of
//     one sample per image, and of the bicubic images, to the real test images, beside
//     the real-train-vs-real-test floor.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "eval/judge.h"

namespace loom::eval {

struct SuperResolutionEvalOptions {
  std::string data;         // dataset directory (a test split)
  int64_t image_size = 32;  // the output side, as the stage was trained: size, channels, fit
  int64_t channels = 1;
  std::string fit = "resize";
  int64_t low_res = 16;     // the input side
  int64_t limit = 1000;     // images; 0 = all
  int64_t batch = 100;      // images upsampled at once (at most)
  int samples = 8;          // per image
  uint64_t seed = 0;        // noise, and which images when limited
  int workers = 1;
};

// Upsampled images [B, C, S, S] in [-1, 1] of inputs [B, C, s, s] and their captions;
// the same seed gives the same images.
using Upsampler = std::function<absl::StatusOr<torch::Tensor>(
    const torch::Tensor& low, const std::vector<std::string>& captions, uint64_t seed)>;

struct SuperResolutionResult {
  struct Figures {
    double psnr = 0, ssim = 0;
  };
  Figures sample, mean, bicubic;                          // against the real image
  double consistency = 0, consistency_bicubic = 0;         // PSNR of the output shrunk vs the input
  bool judged = false;
  double frechet = 0, frechet_bicubic = 0, frechet_floor = 0;
  int64_t images = 0;
  int samples = 0;
  double seconds = 0;
  nlohmann::ordered_json ToJson() const;
};

// `judge` may be null (no Fréchet distances); it must see images of the output side.
absl::StatusOr<SuperResolutionResult> EvaluateSuperResolution(const Upsampler& upsample,
                                                              const SuperResolutionEvalOptions& options,
                                                              const Judge* judge);

}  // namespace loom::eval

// How well an autoencoder reconstructs held-out images or clips: PSNR and SSIM of the
// images (or of every frame) as 8-bit pictures (pixel values in [0, 1] after rounding to
// 256 levels), each averaged over the images (frames); for clips also the first frame
// apart and flicker. SSIM is Wang et al.'s: an 11x11 Gaussian window of sigma 1.5 over
// the valid region, C1 = 0.01^2, C2 = 0.03^2, per channel.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "data/loader.h"

namespace loom::eval {

// Per-image PSNR in dB [B] of images in [-1, 1] ([B, C, H, W]); identical images give
// +inf.
torch::Tensor Psnr(const torch::Tensor& real, const torch::Tensor& fake);
// Per-image SSIM [B] of images in [-1, 1] ([B, C, H, W], H and W >= 11).
torch::Tensor Ssim(const torch::Tensor& real, const torch::Tensor& fake);

struct ReconstructionResult {
  double psnr = 0;  // mean over images, dB
  double ssim = 0;  // mean over images
  int64_t images = 0;
  double seconds = 0;
  nlohmann::ordered_json ToJson() const;
};

// The largest batch of at most `most` images that divides `total` (every batch full).
int64_t DividingBatch(int64_t total, int64_t most);

// The held-out images an evaluation reads: the first `limit` (0 = all) of the dataset at
// `dir`, in the order of `seed`, as a model of that image size, channels and fit sees
// them, `batch` at a time (at most `most`, dividing `total`: every batch full).
struct EvalImages {
  std::unique_ptr<data::Loader> loader;
  std::vector<std::string> label_names;
  bool has_labels = false;
  int64_t total = 0;
  int64_t batch = 0;
};
absl::StatusOr<EvalImages> OpenEvalImages(const std::string& dir, int64_t image_size, int64_t channels,
                                          const std::string& fit, int64_t limit, int64_t most, uint64_t seed,
                                          int workers);

// Reconstructions of images [B, C, H, W] in [-1, 1].
using Reconstructor = std::function<torch::Tensor(const torch::Tensor& images)>;

struct ReconstructionEvalOptions {
  std::string data;          // dataset directory (a test split)
  int64_t image_size = 32;   // as the autoencoder was trained: size, channels, fit
  int64_t channels = 1;
  std::string fit = "pad";
  int64_t limit = 0;         // images to evaluate; 0 = all
  int64_t batch = 250;       // at most this many at once
  uint64_t seed = 0;         // which images, when limited
  int workers = 1;
};

// Runs `reconstruct` over the dataset as the loader gives it and averages the figures.
absl::StatusOr<ReconstructionResult> EvaluateReconstruction(const Reconstructor& reconstruct,
                                                            const ReconstructionEvalOptions& options);

// Clips: the same figures per frame, and how much the reconstruction changes between
// consecutive frames beside how much the real clip does.
struct ClipReconstructionResult {
  double psnr = 0, ssim = 0;              // over every frame of every clip
  double first_psnr = 0, first_ssim = 0;  // frame 0 of each clip
  double later_psnr = 0, later_ssim = 0;  // frames 1 .. T-1
  std::vector<double> psnr_per_frame;     // by frame index
  // Mean |frame t+1 - frame t| over pixels (values in [0, 1]) of the reconstructions and
  // of the real clips: a reconstruction that flickers exceeds the real motion.
  double flicker = 0, flicker_real = 0;
  int64_t clips = 0, frames = 0;
  double seconds = 0;
  nlohmann::ordered_json ToJson() const;
};

// Reconstructions of clips [B, T, C, H, W] in [-1, 1].
using ClipReconstructor = std::function<torch::Tensor(const torch::Tensor& clips)>;

// Runs `reconstruct` over the clips of a video dataset (options.limit: clips).
absl::StatusOr<ClipReconstructionResult> EvaluateClipReconstruction(const ClipReconstructor& reconstruct,
                                                                    const ReconstructionEvalOptions& options);

}  // namespace loom::eval

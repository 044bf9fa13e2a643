// The causal video VAE stage (see video_vae_stage.h).
#include "stages/video_vae_stage.h"

#include <cmath>
#include <filesystem>

#include "core/rng.h"
#include "data/manifest.h"
#include "eval/gif.h"
#include "eval/reconstruction.h"
#include "stages/autocast.h"
#include "stages/registry.h"

namespace loom::stages {
namespace {

// [B, T, C, H, W] <-> [B, C, T, H, W].
torch::Tensor ToChannelsFirst(const torch::Tensor& clips) { return clips.permute({0, 2, 1, 3, 4}); }
torch::Tensor ToFramesFirst(const torch::Tensor& x) { return x.permute({0, 2, 1, 3, 4}); }

// Whether the step trains on single frames: one coin per (seed, step), the same on every rank.
bool ImageStep(uint64_t seed, int64_t step, double share) {
  SplitMix64 coin(SeedFor(seed ^ 0x494D4147ull, static_cast<uint64_t>(step), 0));
  return coin.Uniform() < share;
}

}  // namespace

void VideoVaeStageOptions::Describe(config::Fields<VideoVaeStageOptions>& f) {
  using O = VideoVaeStageOptions;
  f.Add("model", &O::model, "the causal video autoencoder");
  f.Add("loss", &O::loss, "reconstruction and KL terms, per frame");
  f.Add("image_share", &O::image_share, "share of steps that train on single frames (one from each clip)")
      .Rule(config::Between(0, 1));
  f.Add("eval", &O::eval, "evaluation every train.eval_every steps (eval.samples: held-out clips)");
  f.Add("calibration_samples", &O::calibration_samples,
        "training clips the per-channel latent shift and scale are measured on at export")
      .Rule(config::Positive());
}

VideoVaeStage::VideoVaeStage(const VideoVaeStageOptions& o, ImageSpec images, int64_t frames)
    : options(o), images_(std::move(images)), frames_(frames) {
  vae = register_module("vae", models::VideoAutoencoder(o.model, images_.channels));
  shift_ = torch::zeros({o.model.z_channels});
  scale_ = torch::ones({o.model.z_channels});
}

std::vector<Trainable> VideoVaeStage::Trainables() {
  Trainable a;
  a.name = "vae";
  a.module = vae.ptr();
  a.optim = optim;
  a.ema = ema;
  return {a};
}

DataNeeds VideoVaeStage::Needs() const {
  DataNeeds needs;
  needs.pixels = true;
  needs.clips = true;
  return needs;
}

torch::Tensor VideoVaeStage::EncodeClips(const torch::Tensor& clips) {
  torch::NoGradGuard no_grad;
  return vae->encode(ToChannelsFirst(clips.to(device())));  // [B, 2z, t, h, w]
}

torch::Tensor VideoVaeStage::DecodeClips(const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  return ToFramesFirst(vae->decode(latents.to(device())));  // [B, T, C, H, W]
}

LossResult VideoVaeStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  TORCH_CHECK(batch.pixels.dim() == 5, "the video_vae stage trains on clips [B, T, C, H, W]; got ",
              batch.pixels.sizes());
  torch::Tensor clips = batch.pixels;  // [B, T, C, H, W]
  const int64_t B = clips.size(0);
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  const auto id = [&](int64_t i) { return static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]); };
  if (ImageStep(ctx.seed, ctx.step, options.image_share)) {
    // One frame of each clip, drawn per sample: a batch of one-frame clips.
    std::vector<torch::Tensor> frames;
    for (int64_t i = 0; i < B; ++i) {
      SplitMix64 draw(SeedFor(ctx.seed ^ 0x4652414Dull, static_cast<uint64_t>(ctx.step), id(i)));
      frames.push_back(clips[i].narrow(0, static_cast<int64_t>(draw.Below(static_cast<uint64_t>(clips.size(1)))), 1));
    }
    clips = torch::stack(frames);  // [B, 1, C, H, W]
  }
  const int64_t T = clips.size(1), z = options.model.z_channels;
  const torch::Tensor x = ToChannelsFirst(clips.to(device()));  // [B, C, T, H, W]
  Autocast autocast(device(), ctx.bf16);
  const torch::Tensor moments = vae->encode(x).to(torch::kFloat32);  // [B, 2z, t, h, w]
  const torch::Tensor mean = moments.narrow(1, 0, z), logvar = moments.narrow(1, z, z).clamp(-30.0, 20.0);
  // The posterior draw of each sample from (seed, step, sample id), as every random draw.
  torch::Tensor eps = torch::empty(mean.sizes());
  for (int64_t i = 0; i < B; ++i) {
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(ctx.seed, static_cast<uint64_t>(ctx.step), id(i)));
    eps[i].copy_(torch::randn(mean[i].sizes(), gen));
  }
  const torch::Tensor latent = mean + torch::exp(0.5 * logvar) * eps.to(device());
  const torch::Tensor recon = vae->decode(latent).to(torch::kFloat32);  // [B, C, T, H, W]
  const torch::Tensor err = options.loss.recon == "l1" ? (x - recon).abs() : (x - recon).pow(2);
  const double per = static_cast<double>(B * T);  // summed per frame, averaged over frames
  const torch::Tensor rec = err.sum() / per;
  const torch::Tensor kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / per;
  LossResult r;
  r.loss = rec + options.loss.kl_weight * kl;
  r.metrics = {{"rec", err.mean().detach()}, {"kl", kl.detach()}};
  return r;
}

absl::Status VideoVaeStage::Preview(const PreviewData& data, const std::string& png_path) {
  const torch::Tensor& x = data.batch.pixels;
  if (!x.defined() || x.dim() != 5 || x.size(0) == 0) return absl::OkStatus();
  const int64_t n = std::min<int64_t>(4, x.size(0));
  const torch::Tensor real = x.narrow(0, 0, n).to(torch::kCPU, torch::kFloat32);
  const torch::Tensor moments = EncodeClips(real);
  const torch::Tensor recon = DecodeClips(moments.narrow(1, 0, options.model.z_channels)).clamp(-1, 1).to(torch::kCPU);
  // Per clip: its frames in a row, the reconstruction's beneath.
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < n; ++i) {
    rows.push_back(real[i]);
    rows.push_back(recon[i]);
  }
  return eval::WriteStrip(png_path, torch::stack(rows), 1);
}

absl::StatusOr<nlohmann::ordered_json> VideoVaeStage::Evaluate(const PreviewData& data) {
  ASSIGN_OR_RETURN(eval::ReconstructionEvalOptions o,
                   HeldOutReconstruction(data, images_, options.eval.samples, "video_vae", "clips"));
  o.batch = 16;
  const auto reconstruct = [&](const torch::Tensor& clips) {
    return DecodeClips(EncodeClips(clips).narrow(1, 0, options.model.z_channels)).to(torch::kCPU);
  };
  ASSIGN_OR_RETURN(eval::ClipReconstructionResult r, eval::EvaluateClipReconstruction(reconstruct, o));
  nlohmann::ordered_json j = r.ToJson();
  j.erase("psnr_per_frame");  // one row of scalars in metrics.jsonl
  return j;
}

absl::StatusOr<nlohmann::ordered_json> VideoVaeStage::Calibrate(data::Loader& loader, int64_t batches) {
  // Per channel: the mean and 1 / std of posterior samples of training clips, so that
  // diffusion sees latents of zero mean and unit spread in every channel.
  const int64_t z = options.model.z_channels;
  torch::Tensor sum = torch::zeros({z}, torch::kFloat64), sum_sq = torch::zeros({z}, torch::kFloat64);
  int64_t count = 0, clips = 0;
  at::Generator gen = at::detail::createCPUGenerator(SeedFor(0, 0x43414c49ull, 0));
  for (int64_t b = 0; b < batches; ++b) {
    ASSIGN_OR_RETURN(data::Batch batch, loader.Next());
    const torch::Tensor moments = EncodeClips(batch.pixels).to(torch::kCPU, torch::kFloat64);
    const torch::Tensor mean = moments.narrow(1, 0, z), logvar = moments.narrow(1, z, z).clamp(-30, 20);
    const torch::Tensor latent = mean + torch::exp(0.5 * logvar) * torch::randn(mean.sizes(), gen).to(torch::kFloat64);
    const torch::Tensor per_channel = latent.transpose(0, 1).reshape({z, -1});  // [z, N]
    sum += per_channel.sum(1);
    sum_sq += per_channel.pow(2).sum(1);
    count += per_channel.size(1);
    clips += batch.pixels.size(0);
  }
  if (count == 0) return absl::InvalidArgumentError("no training clips to measure the latent shift and scale on");
  const torch::Tensor mean = sum / count, std = (sum_sq / count - mean.pow(2)).clamp_min(0).sqrt();
  if (!(std.min().item<double>() > 0)) {
    return absl::FailedPreconditionError("a latent channel has no spread; the video VAE is degenerate");
  }
  std::vector<double> shift(z), scale(z);
  for (int64_t c = 0; c < z; ++c) {
    shift[c] = mean[c].item<double>();
    scale[c] = 1.0 / std[c].item<double>();
  }
  return nlohmann::ordered_json{{"latent_shift", shift}, {"latent_scale", scale}, {"clips", clips}};
}

absl::Status VideoVaeStage::SetCalibration(const nlohmann::json& c) {
  if (c.is_null() || c.empty()) return absl::OkStatus();
  const int64_t z = options.model.z_channels;
  const auto vector = [&](const char* key) -> absl::StatusOr<torch::Tensor> {
    if (!c.contains(key) || !c[key].is_array() || static_cast<int64_t>(c[key].size()) != z) {
      return absl::DataLossError(std::string("the video vae's calibration has no ") + key + " of " +
                                 std::to_string(z) + " numbers: " + c.dump());
    }
    torch::Tensor t = torch::empty({z});
    for (int64_t i = 0; i < z; ++i) {
      if (!c[key][i].is_number()) return absl::DataLossError(std::string("calibration ") + key + " is not numeric");
      t[i] = c[key][i].get<double>();
    }
    return t;
  };
  ASSIGN_OR_RETURN(torch::Tensor shift, vector("latent_shift"));
  ASSIGN_OR_RETURN(torch::Tensor scale, vector("latent_scale"));
  if (!(scale.min().item<double>() > 0)) return absl::DataLossError("the video vae's latent_scale must be positive");
  shift_ = shift;
  scale_ = scale;
  calibration_ = c;
  return absl::OkStatus();
}

double VideoVaeStage::ForwardFlops(int64_t batch) const {
  return models::VideoVaeForwardFlops(options.model, images_.channels, frames_, images_.size) *
         static_cast<double>(batch);
}

nlohmann::ordered_json VideoVaeStage::Describe() const {
  const models::VideoVaeOptions& m = options.model;
  return {{"image_size", images_.size},
          {"channels", images_.channels},
          {"fit", images_.fit},
          {"frames", frames_},
          {"ch", m.ch},
          {"ch_mult", m.ch_mult},
          {"num_res_blocks", m.num_res_blocks},
          {"z_channels", m.z_channels},
          {"temporal_down", m.temporal_down},
          {"groups", m.groups},
          {"spatial_factor", spatial_factor()},
          {"temporal_factor", temporal_factor()},
          {"latent_frames", models::LatentFrames(m, frames_)},
          {"causal", true}};
}

std::vector<CacheField> VideoVaeStage::CacheFields() const {
  const int64_t side = images_.size / spatial_factor();
  return {{"latents", {2 * options.model.z_channels, models::LatentFrames(options.model, frames_), side, side}}};
}

absl::Status VideoVaeStage::CheckSourceFrames(int64_t frames) const {
  if (frames == frames_) return absl::OkStatus();
  return absl::InvalidArgumentError("the clips have " + std::to_string(frames) + " frames; this video VAE caches clips of " +
                                    std::to_string(frames_) + " (its data.frames)");
}

std::map<std::string, torch::Tensor> VideoVaeStage::EncodeBatch(const data::Batch& batch) {
  return {{"latents", EncodeClips(batch.pixels).to(torch::kCPU, torch::kFloat32).contiguous()}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeVideoVaeStage(const StageInputs& in) {
  const VideoVaeStageOptions& o = *in.options->As<VideoVaeStageOptions>();
  RETURN_IF_ERROR(models::CheckVideoVae(o.model, in.data.image_size));
  // The clips' frame count is data.frames (an export reads it back from its config),
  // checked against the training clips wherever they are at hand.
  const int64_t frames = in.data.frames;
  if (frames < 2) {
    return absl::InvalidArgumentError("data.frames is " + std::to_string(frames) +
                                      "; the video_vae stage trains on clips: set data.frames to the frame count of "
                                      "data.train's clips");
  }
  if (const absl::Status s = models::CheckVideoFrames(o.model, frames); !s.ok()) {
    return absl::InvalidArgumentError("data.frames: " + std::string(s.message()));
  }
  if (!in.data.train.empty() && std::filesystem::exists(std::filesystem::path(in.data.train) / "manifest.json")) {
    ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(in.data.train));
    if (manifest.spec.modality != data::Modality::kVideo) {
      return absl::InvalidArgumentError("data.train " + in.data.train + " holds " + manifest.spec.ToString() +
                                        " samples; the video_vae stage trains on clips (make them with "
                                        "'loom data moving-fashion' or 'loom data shapes --frames')");
    }
    if (manifest.spec.frames != frames) {
      return absl::InvalidArgumentError("data.frames is " + std::to_string(frames) + " but data.train " +
                                        in.data.train + " holds clips of " + std::to_string(manifest.spec.frames) +
                                        " frames; set data.frames: " + std::to_string(manifest.spec.frames));
    }
  }
  auto stage = std::make_shared<VideoVaeStage>(o, ImageSpec{in.data.image_size, in.data.channels, in.data.fit}, frames);
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

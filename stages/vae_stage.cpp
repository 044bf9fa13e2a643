// The KL-VAE stage (see vae_stage.h).
#include "stages/vae_stage.h"

#include <cmath>

#include "core/rng.h"
#include "eval/image_grid.h"
#include "eval/reconstruction.h"
#include "stages/autocast.h"
#include "stages/registry.h"

namespace loom::stages {

void VaeLossOptions::Describe(config::Fields<VaeLossOptions>& f) {
  using O = VaeLossOptions;
  f.Add("recon", &O::recon, "reconstruction error per pixel, summed over the image: l1 or l2")
      .Rule(config::OneOf({"l1", "l2"}));
  f.Add("kl_weight", &O::kl_weight, "weight of the KL term (latent diffusion: 1e-6)").Rule(config::Between(0, 1e3));
}

VaeDiscOptions::VaeDiscOptions() {
  // Latent diffusion's discriminator optimizer: Adam with betas (0.5, 0.9).
  optim.lr = 2e-4;
  optim.betas = {0.5, 0.9};
  optim.warmup = 0;
  optim.decay = "constant";
  optim.clip_grad = 0;
}

void VaeDiscOptions::Describe(config::Fields<VaeDiscOptions>& f) {
  using O = VaeDiscOptions;
  f.Add("enabled", &O::enabled, "train a patch discriminator (a second trainable) from `start` on");
  f.Add("start", &O::start, "first step (from 0) of the discriminator and its term (latent diffusion: 50001)")
      .Rule(config::AtLeast(0));
  f.Add("every", &O::every, "the discriminator trains every this many steps").Rule(config::Positive());
  f.Add("weight", &O::weight, "weight of the adversarial term").Rule(config::AtLeast(0));
  f.Add("adaptive", &O::adaptive,
        "scale the adversarial term so its gradient at the decoder's last layer matches the reconstruction's");
  f.Add("model", &O::model, "the discriminator's size");
  f.Add("optim", &O::optim, "the discriminator's optimizer");
}

void VaeEvalOptions::Describe(config::Fields<VaeEvalOptions>& f) {
  f.Add("samples", &VaeEvalOptions::samples, "test images for PSNR and SSIM; 0 = all").Rule(config::AtLeast(0));
}

void VaeStageOptions::Describe(config::Fields<VaeStageOptions>& f) {
  using O = VaeStageOptions;
  f.Add("model", &O::model, "the autoencoder");
  f.Add("loss", &O::loss, "reconstruction and KL terms");
  f.Add("disc", &O::disc, "the patch discriminator");
  f.Add("eval", &O::eval, "evaluation every train.eval_every steps");
  f.Add("calibration_samples", &O::calibration_samples,
        "training images the latent scale is measured on at export").Rule(config::Positive());
}

VaeStage::VaeStage(const VaeStageOptions& o, ImageSpec images) : options(o), images_(std::move(images)) {
  vae = register_module("vae", models::AutoencoderKL(o.model, images_.channels));
  if (o.disc.enabled) {
    disc = register_module("disc", models::PatchDiscriminator(images_.channels, o.disc.model.width, o.disc.model.layers));
  }
}

std::vector<Trainable> VaeStage::Trainables() {
  Trainable a;
  a.name = "vae";
  a.module = vae.ptr();
  a.optim = optim;
  a.ema = ema;
  std::vector<Trainable> out = {a};
  if (!disc.is_empty()) {
    Trainable d;
    d.name = "disc";
    d.module = disc.ptr();
    d.optim = options.disc.optim;
    d.every = options.disc.every;
    d.start = options.disc.start;
    out.push_back(d);
  }
  return out;
}

DataNeeds VaeStage::Needs() const {
  DataNeeds needs;
  needs.pixels = true;
  return needs;
}

std::vector<int64_t> VaeStage::latent_shape() const {
  const int64_t side = images_.size / models::VaeFactor(options.model);
  return {options.model.z_channels, side, side};
}

torch::Tensor VaeStage::Encode(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  const auto device = vae->quant_conv->weight.device();
  return vae->encode(images.to(device));  // [B, 2z, h, w]
}

torch::Tensor VaeStage::Decode(const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  const auto device = vae->quant_conv->weight.device();
  return vae->decode(latents.to(device));  // [B, C, H, W]
}

LossResult VaeStage::Loss(const data::Batch& batch, const StepContext& ctx) {
  return ctx.trainable == 0 ? AutoencoderLoss(batch, ctx) : DiscriminatorLoss(batch, ctx);
}

LossResult VaeStage::AutoencoderLoss(const data::Batch& batch, const StepContext& ctx) {
  const auto device = vae->quant_conv->weight.device();
  const torch::Tensor x = batch.pixels.to(device);  // [B, C, H, W]
  const int64_t B = x.size(0), z = options.model.z_channels;
  Autocast autocast(device, ctx.bf16);
  const torch::Tensor moments = vae->encode(x).to(torch::kFloat32);  // [B, 2z, h, w]
  const torch::Tensor mean = moments.narrow(1, 0, z), logvar = moments.narrow(1, z, z).clamp(-30.0, 20.0);
  // The posterior draw of each sample from (seed, step, sample id), as every random draw.
  torch::Tensor eps = torch::empty(mean.sizes());
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    at::Generator gen = at::detail::createCPUGenerator(
        SeedFor(ctx.seed, static_cast<uint64_t>(ctx.step), static_cast<uint64_t>(ids.data_ptr<int64_t>()[i])));
    eps[i].copy_(torch::randn(mean[i].sizes(), gen));
  }
  const torch::Tensor latent = mean + torch::exp(0.5 * logvar) * eps.to(device);  // [B, z, h, w]
  const torch::Tensor recon = vae->decode(latent).to(torch::kFloat32);            // [B, C, H, W]
  const torch::Tensor err = options.loss.recon == "l1" ? (x - recon).abs() : (x - recon).pow(2);
  const torch::Tensor rec = err.sum() / B;                                          // summed per image
  const torch::Tensor kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / B;
  torch::Tensor loss = rec + options.loss.kl_weight * kl;
  LossResult r;
  r.metrics = {{"rec", (err.mean()).detach()}, {"kl", kl.detach()}};
  if (!disc.is_empty() && ctx.step >= options.disc.start) {
    const torch::Tensor g = -disc->forward(recon).mean();
    torch::Tensor weight = torch::full({}, options.disc.weight, recon.options());
    if (options.disc.adaptive) {
      // Latent diffusion's balance: the ratio of the two terms' gradient norms at the
      // decoder's last layer (this rank's batch; detached).
      const torch::Tensor last = vae->decoder->conv_out->weight;
      const torch::Tensor g_rec = torch::autograd::grad({rec}, {last}, {}, /*retain_graph=*/true)[0];
      const torch::Tensor g_adv = torch::autograd::grad({g}, {last}, {}, /*retain_graph=*/true)[0];
      weight = (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach() * options.disc.weight;
    }
    loss = loss + weight * g;
    r.metrics.push_back({"g_loss", g.detach()});
    r.metrics.push_back({"d_weight", weight.detach()});
  }
  last_recon_ = recon.detach();
  last_ids_ = batch.ids;
  r.loss = loss;
  return r;
}

LossResult VaeStage::DiscriminatorLoss(const data::Batch& batch, const StepContext& ctx) {
  const auto device = vae->quant_conv->weight.device();
  const torch::Tensor x = batch.pixels.to(device);
  torch::Tensor recon = last_recon_;
  if (!recon.defined() || !torch::equal(last_ids_, batch.ids)) {
    // The autoencoder did not train at this step: its reconstruction of the posterior mean.
    torch::NoGradGuard no_grad;
    const torch::Tensor moments = vae->encode(x);
    recon = vae->decode(moments.narrow(1, 0, options.model.z_channels));
  }
  Autocast autocast(device, ctx.bf16);
  const torch::Tensor real = disc->forward(x).to(torch::kFloat32), fake = disc->forward(recon).to(torch::kFloat32);
  const torch::Tensor loss = 0.5 * (torch::relu(1.0 - real).mean() + torch::relu(1.0 + fake).mean());  // hinge
  last_recon_ = torch::Tensor();
  return {loss, {{"logits_real", real.mean().detach()}, {"logits_fake", fake.mean().detach()}}};
}

absl::Status VaeStage::Preview(const PreviewData& data, const std::string& png_path) {
  const torch::Tensor x = data.batch.pixels;
  if (!x.defined() || x.size(0) == 0) return absl::OkStatus();
  const torch::Tensor moments = Encode(x);
  const torch::Tensor recon = Decode(moments.narrow(1, 0, options.model.z_channels)).clamp(-1, 1).to(torch::kCPU);
  // Rows of 8: inputs, then their reconstructions beneath.
  const int64_t n = x.size(0), cols = std::min<int64_t>(8, n);
  std::vector<torch::Tensor> rows;
  for (int64_t from = 0; from + cols <= n; from += cols) {
    rows.push_back(x.narrow(0, from, cols));
    rows.push_back(recon.narrow(0, from, cols));
  }
  return eval::WriteGrid(png_path, torch::cat(rows), static_cast<int>(cols));
}

absl::StatusOr<eval::ReconstructionEvalOptions> HeldOutReconstruction(const PreviewData& data, const ImageSpec& images,
                                                                      int64_t limit, const std::string& kind,
                                                                      const std::string& samples) {
  if (data.data.test.empty()) {
    return absl::InvalidArgumentError("train.eval_every is set but data.test is empty: the " + kind +
                                      " stage evaluates reconstructions of held-out " + samples);
  }
  eval::ReconstructionEvalOptions o;
  o.data = data.data.test;
  o.image_size = images.size;
  o.channels = images.channels;
  o.fit = images.fit;
  o.limit = limit;
  o.seed = data.seed;
  return o;
}

absl::StatusOr<nlohmann::ordered_json> VaeStage::Evaluate(const PreviewData& data) {
  ASSIGN_OR_RETURN(const eval::ReconstructionEvalOptions o,
                   HeldOutReconstruction(data, images_, options.eval.samples, "vae", "images"));
  const auto reconstruct = [&](const torch::Tensor& images) {
    return Decode(Encode(images).narrow(1, 0, options.model.z_channels)).to(torch::kCPU);
  };
  ASSIGN_OR_RETURN(eval::ReconstructionResult r, eval::EvaluateReconstruction(reconstruct, o));
  return r.ToJson();
}

absl::StatusOr<nlohmann::ordered_json> VaeStage::Calibrate(data::Loader& loader, int64_t batches) {
  // As Stable Diffusion measured 0.18215: 1 / std of posterior samples of training images.
  double sum = 0, sum_sq = 0;
  int64_t count = 0, images = 0;
  at::Generator gen = at::detail::createCPUGenerator(SeedFor(0, 0x43414c49ull, 0));
  for (int64_t b = 0; b < batches; ++b) {
    ASSIGN_OR_RETURN(data::Batch batch, loader.Next());
    const torch::Tensor moments = Encode(batch.pixels).to(torch::kCPU, torch::kFloat64);
    const int64_t z = options.model.z_channels;
    const torch::Tensor mean = moments.narrow(1, 0, z), logvar = moments.narrow(1, z, z).clamp(-30, 20);
    const torch::Tensor latent = mean + torch::exp(0.5 * logvar) * torch::randn(mean.sizes(), gen).to(torch::kFloat64);
    sum += latent.sum().item<double>();
    sum_sq += latent.pow(2).sum().item<double>();
    count += latent.numel();
    images += batch.pixels.size(0);
  }
  if (count == 0) return absl::InvalidArgumentError("no training images to measure the latent scale on");
  const double mean = sum / count, std = std::sqrt(std::max(0.0, sum_sq / count - mean * mean));
  if (!(std > 0)) return absl::FailedPreconditionError("the latents have no spread; the VAE is degenerate");
  return nlohmann::ordered_json{{"latent_scale", 1.0 / std}, {"latent_mean", mean}, {"latent_std", std},
                                {"images", images}};
}

absl::Status VaeStage::SetCalibration(const nlohmann::json& c) {
  if (c.is_null() || c.empty()) return absl::OkStatus();
  if (!c.contains("latent_scale") || !c["latent_scale"].is_number() || !(c["latent_scale"].get<double>() > 0)) {
    return absl::DataLossError("the vae's calibration has no positive latent_scale: " + c.dump());
  }
  latent_scale_ = c["latent_scale"].get<double>();
  calibration_ = c;
  return absl::OkStatus();
}

double VaeStage::ForwardFlops(int64_t batch) const {
  return models::VaeForwardFlops(options.model, images_.channels, images_.size) * static_cast<double>(batch);
}

nlohmann::ordered_json VaeStage::Describe() const {
  const models::VaeOptions& m = options.model;
  const std::vector<int64_t> latent = latent_shape();
  return {{"image_size", images_.size},
          {"channels", images_.channels},
          {"fit", images_.fit},
          {"ch", m.ch},
          {"ch_mult", m.ch_mult},
          {"num_res_blocks", m.num_res_blocks},
          {"z_channels", m.z_channels},
          {"attention", m.attention},
          {"groups", m.groups},
          {"factor", models::VaeFactor(m)},
          {"latent_shape", latent},
          {"discriminator", options.disc.enabled}};
}

std::vector<CacheField> VaeStage::CacheFields() const {
  const std::vector<int64_t> latent = latent_shape();
  return {{"latents", {2 * latent[0], latent[1], latent[2]}}};
}

std::map<std::string, torch::Tensor> VaeStage::EncodeBatch(const data::Batch& batch) {
  return {{"latents", Encode(batch.pixels).to(torch::kCPU, torch::kFloat32).contiguous()}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeVaeStage(const StageInputs& in) {
  const VaeStageOptions& o = *in.options->As<VaeStageOptions>();
  RETURN_IF_ERROR(models::CheckVae(o.model, in.data.image_size));
  auto stage = std::make_shared<VaeStage>(o, ImageSpec{in.data.image_size, in.data.channels, in.data.fit});
  stage->optim = in.optim;
  stage->ema = in.train.ema;
  return std::shared_ptr<Stage>(stage);
}

}  // namespace loom::stages

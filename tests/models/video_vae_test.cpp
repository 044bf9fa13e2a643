// The causal video VAE (models/video_vae.h). Against its PyTorch reference
// (bench/reference/video_vae_ref.py), both in float64: a small model with every kind of
// block (ResNet blocks with and without shortcut, down- and up-sampling in space alone
// and in space and time) gives the same moments, reconstruction, loss and gradient of
// every parameter within 1e-5, and its FLOPs count is torch's flop counter's. Causality:
// a changed frame k leaves the reconstruction of frames 0..k-1 alone, and a clip's first
// latent frame is its first frame's latent. Clip lengths: 1 + k x 4 frames round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs.h"                   // WriteFileAtomic
#include "core/safetensors.h"          // WriteSafetensors, ReadSafetensors
#include "models/video_vae.h"
#include "tests/support/subprocess.h"  // Run, TempDir, LastLine

namespace loom::models {
namespace {

const std::string kPython = LOOM_PYTHON;
const std::string kParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/video_vae_parity.py";

// Three levels, time halved at the first downsampling only: 5 frames of 8x8 -> 3 of 2x2.
VideoVaeOptions Small() {
  VideoVaeOptions o;
  o.ch = 8;
  o.ch_mult = {1, 2, 2};
  o.num_res_blocks = 1;
  o.z_channels = 2;
  o.temporal_down = 1;
  o.groups = 4;
  return o;
}

// ||loom - reference|| / ||loom||, in float64 (as bench/reference/parity_util.py).
double RelErr(const torch::Tensor& loom, const torch::Tensor& reference) {
  const torch::Tensor a = loom.detach().to(torch::kFloat64), b = reference.to(torch::kFloat64);
  return (a - b).norm().item<double>() / std::max(a.norm().item<double>(), 1e-12);
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(VideoVaeParityTest, MomentsReconstructionLossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: launch/setup.sh configures it";
  const VideoVaeOptions o = Small();
  const int64_t B = 2, T = 5, S = 8, z = o.z_channels, t = LatentFrames(o, T), s = S / VideoVaeSpatialFactor(o);
  ASSERT_EQ(t, 3);
  // In float64: in float32, rounding alone moves the gradients that a GroupNorm nearly
  // cancels (a bias before it: conv1's, the downsampling's) by up to 1.3e-5 relative
  // (the reference in float32 against float64, default inits, six seeds), past the
  // tolerance; in float64 rounding takes no part of it.
  torch::manual_seed(21);
  VideoAutoencoder vae(o, 1);
  vae->to(torch::kFloat64);
  const torch::Tensor x = torch::rand({B, 1, T, S, S}, torch::kFloat64) * 2 - 1;
  const torch::Tensor eps = torch::randn({B, z, t, s, s}, torch::kFloat64);
  const torch::Tensor moments = vae->encode(x);  // [B, 2z, t, s, s]
  ASSERT_EQ(moments.sizes(), (std::vector<int64_t>{B, 2 * z, t, s, s}));
  const torch::Tensor mean = moments.narrow(1, 0, z), logvar = moments.narrow(1, z, z).clamp(-30, 20);
  const torch::Tensor recon = vae->decode(mean + torch::exp(0.5 * logvar) * eps);  // [B, 1, T, S, S]
  ASSERT_EQ(recon.sizes(), x.sizes());
  const double frames = static_cast<double>(B * T);
  const torch::Tensor loss = (x - recon).abs().sum() / frames +
                             1e-6 * 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum() / frames;
  loss.backward();

  testing::TempDir dir;
  const nlohmann::json cj = {{"ch", o.ch},
                             {"ch_mult", o.ch_mult},
                             {"num_res_blocks", o.num_res_blocks},
                             {"z_channels", o.z_channels},
                             {"temporal_down", o.temporal_down},
                             {"groups", o.groups},
                             {"channels", 1}};
  ASSERT_TRUE(WriteFileAtomic(dir.str() + "/config.json", cj.dump()).ok());
  std::vector<NamedTensor> weights;
  for (const auto& p : vae->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().norm().item<double>(), 1e-8) << p.key() << ": a vanishing gradient checks nothing";
    weights.push_back({p.key(), p.value().detach()});
  }
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/weights.safetensors", weights).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/inputs.safetensors", {{"x", x}, {"eps", eps}}).ok());
  const testing::Result r = testing::Run(kPython + " " + kParity + " --dir " + dir.str() + " --dtype float64");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(r.out), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << r.out << r.err;
  std::cout << "video vae parity: " << report.dump() << "\n";
  EXPECT_TRUE(report["names_match"].get<bool>());
  const auto outputs = ReadSafetensors(dir.str() + "/outputs.safetensors");
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  const std::map<std::string, torch::Tensor>& ref = *outputs;

  // Each tensor's error, or infinity (and a failure) when the reference wrote none of its shape.
  const auto rel_err = [&](const std::string& name, const torch::Tensor& loom) {
    const auto it = ref.find(name);
    if (it == ref.end() || it->second.sizes() != loom.sizes()) {
      ADD_FAILURE() << name << ": the reference wrote none of shape " << loom.sizes();
      return std::numeric_limits<double>::infinity();
    }
    return RelErr(loom, it->second);
  };
  EXPECT_LE(rel_err("moments", moments), 1e-5);
  EXPECT_LE(rel_err("recon", recon), 1e-5);
  EXPECT_LE(rel_err("loss", loss.reshape({1})), 1e-5);
  size_t checked = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& p : vae->named_parameters()) {
    const double err = rel_err("grad." + p.key(), p.value().grad());
    EXPECT_LE(err, 1e-5) << p.key();
    if (!std::isfinite(err)) continue;
    ++checked;
    if (err >= worst) {
      worst = err;
      worst_name = p.key();
    }
  }
  std::cout << "video vae parity: worst gradient " << worst_name << " " << worst << "\n";
  EXPECT_EQ(checked, vae->parameters().size());

  // The counter sees every convolution, and so does loom's count.
  EXPECT_EQ(VideoVaeForwardFlops(o, 1, T, S), report["forward_flops"].get<double>());
}

// Reconstructions from the posterior mean, as evaluation makes them.
torch::Tensor Reconstruct(VideoAutoencoder& vae, const torch::Tensor& x) {
  return vae->decode(vae->encode(x).narrow(1, 0, vae->options.z_channels));
}

TEST(VideoVae, AFrameChangesNoEarlierFrameOfTheReconstruction) {
  torch::manual_seed(3);
  VideoAutoencoder vae(Small(), 1);
  torch::NoGradGuard no_grad;
  const int64_t k = 3;
  const torch::Tensor x = torch::rand({1, 1, 5, 8, 8}) * 2 - 1;
  torch::Tensor changed = x.clone();
  changed.select(2, k).copy_(torch::rand({1, 1, 8, 8}) * 2 - 1);
  const torch::Tensor a = Reconstruct(vae, x), b = Reconstruct(vae, changed);  // [1, 1, 5, 8, 8]
  // The same arithmetic on the same frames; a convolution algorithm may still round them
  // differently when a later frame differs, hence a bound rather than bitwise equality.
  EXPECT_LE(MaxAbsDiff(a.narrow(2, 0, k), b.narrow(2, 0, k)), 1e-6);
  // At the default init the decoder answers a new frame weakly: the reference's frame k
  // moved by 1e-4 to 3e-4 (four inits), far above the bound on the frames before it.
  EXPECT_GT(MaxAbsDiff(a.select(2, k), b.select(2, k)), 1e-5);
}

TEST(VideoVae, TheFirstFrameIsEncodedAsAOneFrameClip) {
  torch::manual_seed(4);
  VideoAutoencoder vae(Small(), 1);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::rand({2, 1, 5, 8, 8}) * 2 - 1;
  const torch::Tensor clip_latent = vae->encode(x).narrow(2, 0, 1);           // [2, 4, 1, 2, 2]
  const torch::Tensor frame_latent = vae->encode(x.narrow(2, 0, 1));          // [2, 4, 1, 2, 2]
  ASSERT_EQ(clip_latent.sizes(), frame_latent.sizes());
  EXPECT_TRUE(torch::allclose(clip_latent, frame_latent, 1e-5, 1e-5)) << MaxAbsDiff(clip_latent, frame_latent);
  // And back: the first decoded frame is the one-frame latent's decoding.
  const torch::Tensor mean = vae->encode(x).narrow(1, 0, Small().z_channels);  // [2, 2, 3, 2, 2]
  const torch::Tensor clip_frame = vae->decode(mean).narrow(2, 0, 1);         // [2, 1, 1, 8, 8]
  const torch::Tensor one_frame = vae->decode(mean.narrow(2, 0, 1));          // [2, 1, 1, 8, 8]
  EXPECT_TRUE(torch::allclose(clip_frame, one_frame, 1e-5, 1e-5)) << MaxAbsDiff(clip_frame, one_frame);
}

TEST(VideoVae, ClipsOfOnePlusKTimesFourFramesRoundTrip) {
  VideoVaeOptions o = Small();
  o.temporal_down = 2;  // the first two of three levels halve time: factor 4
  ASSERT_EQ(VideoVaeTemporalFactor(o), 4);
  torch::manual_seed(5);
  VideoAutoencoder vae(o, 1);
  torch::NoGradGuard no_grad;
  for (const auto& [frames, latent] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 2}, {9, 3}}) {
    EXPECT_EQ(LatentFrames(o, frames), latent) << frames;
    EXPECT_TRUE(CheckVideoFrames(o, frames).ok()) << frames;
    const torch::Tensor x = torch::rand({1, 1, frames, 8, 8}) * 2 - 1;
    const torch::Tensor moments = vae->encode(x);
    EXPECT_EQ(moments.sizes(), (std::vector<int64_t>{1, 4, latent, 2, 2})) << frames;
    EXPECT_EQ(vae->decode(moments.narrow(1, 0, 2)).sizes(), x.sizes()) << frames;
  }
  const absl::Status bad = CheckVideoFrames(o, 8);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("1 + k x 4"), absl::string_view::npos) << bad.message();
  EXPECT_NE(bad.message().find("9"), absl::string_view::npos) << bad.message();
}

}  // namespace
}  // namespace loom::models

// The U-Net against its PyTorch reference (bench/reference/unet_ref.py): a small U-Net
// with every kind of block (ResBlocks with and without a skip convolution, spatial
// transformers at full and half resolution and in the middle, down- and up-sampling,
// extra input channels, an embedding added to the timestep and made into context
// tokens, a second timestep for the augmentation level) gives the same output, loss and
// gradient of every parameter within 1e-5, on a batch with padded text tokens; its FLOPs
// count matches torch's flop counter. The ldm stage's super-resolution objective on it
// (v-prediction under min-SNR weighting; the low-resolution channel noised to its
// augmentation level and concatenated to x_t; the masked mean of the text tokens as the
// embedding) gives the same loss and gradients too.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs.h"                   // WriteFileAtomic
#include "core/safetensors.h"          // WriteSafetensors
#include "diffusion/gaussian_diffusion.h"
#include "models/unet.h"
#include "tests/support/subprocess.h"  // Run, TempDir, LastLine

namespace loom::models {
namespace {

const std::string kPython = LOOM_PYTHON;
const std::string kParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/unet_parity.py";

TEST(UNetParityTest, OutputLossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: launch/setup.sh configures it";
  UNetOptions o;
  o.model_channels = 8;
  o.channel_mult = {1, 2};
  o.num_res_blocks = 1;
  o.attention_resolutions = {1, 2};
  o.heads = 2;
  o.groups = 4;
  o.extra_in_channels = 1;
  o.embed_dim = 5;
  o.embed_tokens = 2;
  auto config = ResolveUNet(o, 4, 4, 8, 6);
  ASSERT_TRUE(config.ok()) << config.status();
  config->aug_embed = true;
  torch::manual_seed(11);
  UNet net(*config);
  {
    torch::NoGradGuard no_grad;  // the zero-initialised layers too: every path live
    for (auto& p : net->parameters()) {
      if (p.abs().max().item<double>() == 0) p.normal_(0, 0.1);
    }
  }
  const torch::Tensor x = torch::randn({3, 5, 8, 8});
  const torch::Tensor t = torch::tensor({0, 417, 999}, torch::kLong);
  const torch::Tensor context = torch::randn({3, 4, 6});
  const torch::Tensor mask = torch::tensor({1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0}, torch::kBool).view({3, 4});
  const torch::Tensor embed = torch::randn({3, 5});
  const torch::Tensor aug_t = torch::tensor({3, 0, 250}, torch::kLong);
  const torch::Tensor w = torch::randn({3, 4, 8, 8});
  const torch::Tensor out = net->forward(x, t, context, mask, embed, aug_t);
  const torch::Tensor loss = (out * w).sum();
  loss.backward();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    grads[p.key()] = p.value().grad().clone();
    p.value().mutable_grad().zero_();
  }
  // The stage's loss once t, noise and the context are drawn (LdmStage::Losses).
  const auto process = diffusion::GaussianDiffusion::Create(diffusion::DiffusionOptions{});
  ASSERT_TRUE(process.ok()) << process.status();
  const torch::Tensor x0 = torch::randn({3, 4, 8, 8}), noise = torch::randn({3, 4, 8, 8});
  const torch::Tensor low_noise = torch::randn({3, 1, 8, 8});
  const torch::Tensor low = process->q_sample(x.narrow(1, 4, 1), aug_t, low_noise);
  const torch::Tensor maskf = mask.to(torch::kFloat32).unsqueeze(-1);
  const torch::Tensor pooled = (context * maskf).sum(1) / maskf.sum(1).clamp_min(1);  // [3, 6]
  auto pooled_config = *config;
  pooled_config.embed_dim = 6;
  pooled_config.embed_tokens = 0;
  torch::manual_seed(12);
  UNet pooled_net(pooled_config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : pooled_net->parameters()) {
      if (p.abs().max().item<double>() == 0) p.normal_(0, 0.1);
    }
  }
  const diffusion::Denoiser denoiser = [&](const torch::Tensor& x_t, const torch::Tensor& step) {
    return pooled_net->forward(torch::cat({x_t, low}, 1), step, context, mask, pooled, aug_t);
  };
  const torch::Tensor objective = process->training_losses(denoiser, x0, t, noise).mean();
  objective.backward();

  testing::TempDir dir;
  const UNetConfig& c = *config;
  const nlohmann::json cj = {{"in_channels", c.in_channels},       {"out_channels", c.out_channels},
                             {"model_channels", c.model_channels}, {"channel_mult", c.channel_mult},
                             {"num_res_blocks", c.num_res_blocks}, {"attention_resolutions", c.attention_resolutions},
                             {"heads", c.heads},                   {"transformer_depth", c.transformer_depth},
                             {"groups", c.groups},                 {"context_dim", c.context_dim},
                             {"embed_dim", c.embed_dim},           {"embed_tokens", c.embed_tokens},
                             {"aug_embed", c.aug_embed}};
  ASSERT_TRUE(WriteFileAtomic(dir.str() + "/config.json", cj.dump()).ok());
  std::vector<NamedTensor> params, expected = {{"out", out.detach()},
                                               {"loss", loss.detach().reshape({1})},
                                               {"objective", objective.detach().reshape({1})}};
  for (const auto& p : net->named_parameters()) {
    params.push_back({p.key(), p.value().detach()});
    expected.push_back({"grad/" + p.key(), grads.at(p.key())});
  }
  for (const auto& p : pooled_net->named_parameters()) {
    params.push_back({"pooled/" + p.key(), p.value().detach()});
    expected.push_back({"objective_grad/" + p.key(), p.value().grad()});
  }
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/params.safetensors", params).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/expected.safetensors", expected).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/inputs.safetensors", {{"x", x}, {"t", t}, {"context", context},
                                                                  {"mask", mask.to(torch::kLong)}, {"embed", embed},
                                                                  {"w", w}, {"x0", x0}, {"noise", noise}, {"aug_t", aug_t},
                                                                  {"low_noise", low_noise}})
                  .ok());
  const testing::Result r = testing::Run(kPython + " " + kParity + " --dir " + dir.str() + " --tolerance 1e-5");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(r.out), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << r.out << r.err;
  std::cout << "unet parity: " << report.dump() << "\n";
  EXPECT_LE(report["out_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["max_grad_rel_err"].get<double>(), 1e-5) << report["worst_grad"];
  EXPECT_EQ(report["grads_checked"].get<size_t>(), net->parameters().size());
  EXPECT_LE(report["objective_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["max_objective_grad_rel_err"].get<double>(), 1e-5) << report["worst_objective_grad"];
  EXPECT_EQ(report["objective_grads_checked"].get<size_t>(), pooled_net->parameters().size());
  // torch counts matmuls, convolutions and attention; loom's count adds nothing else.
  const double flops = report["forward_flops"].get<double>();
  EXPECT_NEAR(UNetForwardFlops(c, 8, 1, 4), flops, flops * 0.001);
}

}  // namespace
}  // namespace loom::models

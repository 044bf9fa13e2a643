// CLIP against its PyTorch reference (bench/reference/clip_ref.py): a small image tower
// and text tower give the same normalised embeddings, the same contrastive loss (with
// repeated captions as shared positives) and the same gradient of every parameter
// within 1e-5, on a batch with padded captions; the towers' FLOPs count matches torch's
// flop counter. The diffusion prior's network (bench/reference/clip_ref.py, PriorNet) gives
// the same output, x0-prediction loss and gradients, with padded and dropped captions.
#include <gtest/gtest.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs.h"                   // WriteFileAtomic
#include "core/safetensors.h"          // WriteSafetensors
#include "diffusion/gaussian_diffusion.h"
#include "models/clip.h"
#include "models/prior.h"
#include "stages/clip_stage.h"         // ClipLoss, CaptionKeys
#include "tests/support/subprocess.h"  // Run, TempDir, LastLine

namespace loom::models {
namespace {

const std::string kPython = LOOM_PYTHON;
const std::string kParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/clip_parity.py";
const std::string kPriorParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/prior_parity.py";

TEST(ClipParityTest, EmbeddingsLossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: launch/setup.sh configures it";
  ClipConfig c;
  c.image_size = 8;
  c.channels = 1;
  c.patch = 2;
  c.width = 16;
  c.depth = 2;
  c.heads = 2;
  c.embed_dim = 6;
  c.text = {.width = 12, .depth = 2, .heads = 3, .vocab = 20};
  c.max_tokens = 5;
  torch::manual_seed(5);
  ClipModel model(c);
  const torch::Tensor images = torch::randn({6, 1, 8, 8});
  torch::Tensor tokens = torch::randint(3, 20, {6, 5}, torch::kLong);
  tokens.select(1, 0).fill_(2);
  tokens[3].copy_(tokens[0]);  // rows 0 and 3 share a caption; so do 1 and 4
  tokens[4].copy_(tokens[1]);
  const torch::Tensor mask =
      torch::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
                    torch::kBool)
          .view({6, 5});
  const torch::Tensor keys = stages::CaptionKeys(tokens, mask);
  ASSERT_EQ(keys[0].item<int64_t>(), keys[3].item<int64_t>());
  ASSERT_EQ(keys[1].item<int64_t>(), keys[4].item<int64_t>());
  ASSERT_NE(keys[0].item<int64_t>(), keys[2].item<int64_t>());
  const auto normalized = [](const torch::Tensor& x) {
    return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  };
  const torch::Tensor image = normalized(model->image->forward(images));
  const torch::Tensor text = normalized(model->text->forward(tokens, mask));
  const stages::ContrastiveLoss loss = stages::ClipLoss(image, text, keys, model->logit_scale, nullptr);
  loss.loss.backward();

  testing::TempDir dir;
  const nlohmann::json cj = {{"image_size", c.image_size}, {"channels", c.channels}, {"patch", c.patch},
                             {"width", c.width},           {"depth", c.depth},       {"heads", c.heads},
                             {"embed_dim", c.embed_dim},   {"max_tokens", c.max_tokens},
                             {"text", {{"width", c.text.width}, {"depth", c.text.depth}, {"heads", c.text.heads},
                                       {"vocab", c.text.vocab}}}};
  ASSERT_TRUE(WriteFileAtomic(dir.str() + "/config.json", cj.dump()).ok());
  std::vector<NamedTensor> params, expected = {
      {"image", image.detach()}, {"text", text.detach()}, {"loss", loss.loss.detach().reshape({1})}};
  for (const auto& p : model->named_parameters()) {
    params.push_back({p.key(), p.value().detach()});
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    expected.push_back({"grad/" + p.key(), p.value().grad()});
  }
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/params.safetensors", params).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/expected.safetensors", expected).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/inputs.safetensors",
                               {{"images", images}, {"tokens", tokens}, {"mask", mask.to(torch::kLong)}, {"keys", keys}})
                  .ok());
  const testing::Result r = testing::Run(kPython + " " + kParity + " --dir " + dir.str() + " --tolerance 1e-5");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(r.out), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << r.out << r.err;
  std::cout << "clip parity: " << report.dump() << "\n";
  EXPECT_LE(report["image_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["text_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["loss_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["max_grad_rel_err"].get<double>(), 1e-5) << report["worst_grad"];
  EXPECT_EQ(report["grads_checked"].get<size_t>(), model->parameters().size());
  const double flops = report["forward_flops"].get<double>();
  EXPECT_NEAR(ClipForwardFlops(c, 6), flops, flops * 0.001);
}

TEST(PriorParityTest, OutputLossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: launch/setup.sh configures it";
  PriorConfig c;
  c.embed_dim = 6;
  c.text_width = 10;
  c.max_tokens = 5;
  c.width = 16;
  c.depth = 2;
  c.heads = 2;
  torch::manual_seed(9);
  PriorNet net(c);
  const int64_t B = 4;
  const torch::Tensor x0 =
      torch::nn::functional::normalize(torch::randn({B, 6}), torch::nn::functional::NormalizeFuncOptions().dim(-1)) *
      std::sqrt(6.0);
  const torch::Tensor noise = torch::randn({B, 6}), x_t = torch::randn({B, 6});
  const torch::Tensor t = torch::tensor({0, 250, 600, 999}, torch::kLong);
  const torch::Tensor text_embed = torch::randn({B, 6}), tokens = torch::randn({B, 5, 10});
  const torch::Tensor mask =
      torch::tensor({1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0}, torch::kBool).view({B, 5});
  const torch::Tensor dropped = torch::tensor({0, 0, 1, 0}, torch::kBool);
  const torch::Tensor out = net->forward(x_t, t, text_embed, tokens, mask, dropped);
  diffusion::DiffusionOptions o;
  o.prediction = "x0";
  o.loss_weight = "uniform";
  const auto process = diffusion::GaussianDiffusion::Create(o);
  ASSERT_TRUE(process.ok()) << process.status();
  const torch::Tensor loss =
      process
          ->training_losses([&](const torch::Tensor& x, const torch::Tensor& s) {
            return net->forward(x, s, text_embed, tokens, mask, dropped);
          }, x0, t, noise)
          .mean();
  loss.backward();

  testing::TempDir dir;
  const nlohmann::json cj = {{"embed_dim", c.embed_dim}, {"text_width", c.text_width}, {"max_tokens", c.max_tokens},
                             {"width", c.width},         {"depth", c.depth},           {"heads", c.heads}};
  ASSERT_TRUE(WriteFileAtomic(dir.str() + "/config.json", cj.dump()).ok());
  std::vector<NamedTensor> params, expected = {{"out", out.detach()}, {"loss", loss.detach().reshape({1})}};
  for (const auto& p : net->named_parameters()) {
    params.push_back({p.key(), p.value().detach()});
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    expected.push_back({"grad/" + p.key(), p.value().grad()});
  }
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/params.safetensors", params).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/expected.safetensors", expected).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/inputs.safetensors",
                               {{"x_t", x_t}, {"t", t}, {"text_embed", text_embed}, {"tokens", tokens},
                                {"mask", mask.to(torch::kLong)}, {"dropped", dropped.to(torch::kLong)}, {"x0", x0},
                                {"noise", noise}})
                  .ok());
  const testing::Result r = testing::Run(kPython + " " + kPriorParity + " --dir " + dir.str() + " --tolerance 1e-5");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(r.out), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << r.out << r.err;
  std::cout << "prior parity: " << report.dump() << "\n";
  EXPECT_LE(report["out_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["loss_rel_err"].get<double>(), 1e-5);
  EXPECT_LE(report["max_grad_rel_err"].get<double>(), 1e-5) << report["worst_grad"];
  EXPECT_EQ(report["grads_checked"].get<size_t>(), net->parameters().size());
  const double flops = report["forward_flops"].get<double>();
  EXPECT_NEAR(PriorForwardFlops(c, B), flops, flops * 0.001);
}

}  // namespace
}  // namespace loom::models

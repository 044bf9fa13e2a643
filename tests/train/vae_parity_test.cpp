// The PyTorch reference (bench/reference/vae_ref.py) computes what the C++ vae stage
// computes: the autoencoder loss of a small VAE (every kind of block: ResNet blocks with
// and without shortcut, down- and up-sampling, middle attention) and the gradient of
// every parameter, on the same images and posterior draws, agree to 1e-5 (relative L2
// per tensor), for the L1 and the L2 reconstruction loss.
#include <gtest/gtest.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "core/config/load.h"          // LoadString
#include "core/rng.h"                  // SeedFor
#include "core/safetensors.h"          // WriteSafetensors
#include "pipeline/export.h"           // WriteExport
#include "stages/registry.h"           // MakeStage
#include "stages/vae_stage.h"          // VaeStage
#include "tests/support/subprocess.h"  // Run, TempDir, LastLine

namespace loom::stages {
namespace {

const std::string kPython = LOOM_PYTHON;
const std::string kParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/vae_parity.py";

class VaeParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VaeParityTest, LossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: launch/setup.sh configures it";
  const std::string yaml =
      "data: {image_size: 16, channels: 1}\n"
      "stage:\n"
      "  kind: vae\n"
      "  model: {ch: 8, ch_mult: [1, 2], num_res_blocks: 1, z_channels: 3, attention: true, groups: 4}\n"
      "  loss: {recon: " + GetParam() + ", kl_weight: 0.01}\n";
  const auto options = config::LoadString<train::ExperimentOptions>(yaml, "vae-parity.yaml");
  ASSERT_TRUE(options.ok()) << options.status();
  torch::manual_seed(4321);
  StageInputs in;
  in.options = &options->stage;
  in.data = options->data;
  const auto made = MakeStage(in);
  ASSERT_TRUE(made.ok()) << made.status();
  auto stage = std::dynamic_pointer_cast<VaeStage>(*made);
  ASSERT_NE(stage, nullptr);

  // The loss as training computes it, on a batch of 3 images with ids 5, 9, 12.
  data::Batch batch;
  batch.pixels = torch::rand({3, 1, 16, 16}) * 2 - 1;
  batch.ids = torch::tensor({5, 9, 12}, torch::kLong);
  const StepContext ctx{/*seed=*/17, /*step=*/3, /*trainable=*/0, /*bf16=*/false};
  const LossResult r = stage->Loss(batch, ctx);
  r.loss.backward();
  // The posterior draws it made: from (seed, step, sample id), as every draw.
  torch::Tensor eps = torch::empty({3, 3, 8, 8});
  for (int64_t i = 0; i < 3; ++i) {
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(17, 3, static_cast<uint64_t>(batch.ids[i].item<int64_t>())));
    eps[i].copy_(torch::randn({3, 8, 8}, gen));
  }

  testing::TempDir dir;
  pipeline::LoadedModel loaded;
  loaded.stage = stage;
  loaded.options = *options;
  loaded.kind = "vae";
  loaded.weights = "raw";
  loaded.source = "vae_parity_test";
  ASSERT_TRUE(pipeline::WriteExport(loaded, dir.str() + "/export", {}).ok());
  const double kl = r.metrics[1].second.item<double>();
  const double rec = r.loss.item<double>() - 0.01 * kl;
  std::vector<NamedTensor> expected = {{"loss", r.loss.detach().reshape({1})},
                                       {"rec", torch::tensor({rec}, torch::kFloat32)},
                                       {"kl", torch::tensor({kl}, torch::kFloat32)}};
  for (const auto& p : stage->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    // Softmax ignores a bias shared by all keys: that gradient is rounding noise
    // (vae_parity.py measures it against the whole gradient). Every other one is live.
    if (!p.key().ends_with(".k.bias")) {
      EXPECT_GT(p.value().grad().norm().item<double>(), 1e-8) << p.key() << ": a vanishing gradient checks nothing";
    }
    expected.push_back({"grad/" + p.key(), p.value().grad()});
  }
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/inputs.safetensors", {{"x", batch.pixels}, {"eps", eps}}).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/expected.safetensors", expected).ok());
  const testing::Result out = testing::Run(kPython + " " + kParity + " --export " + dir.str() + "/export --inputs " +
                                           dir.str() + "/inputs.safetensors --expected " + dir.str() +
                                           "/expected.safetensors --tolerance 1e-5");
  ASSERT_EQ(out.code, 0) << out.out << out.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(out.out), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << out.out << out.err;
  std::cout << "vae parity (" << GetParam() << "): " << report.dump() << "\n";
  EXPECT_TRUE(report["names_match"].get<bool>());
  EXPECT_LE(report["loss_rel_err"].get<double>(), 1e-5) << out.out;
  EXPECT_LE(report["max_grad_rel_err"].get<double>(), 1e-5) << report["worst_grad"];
  EXPECT_EQ(report["grads_checked"].get<size_t>(), stage->parameters().size());
}

INSTANTIATE_TEST_SUITE_P(Reconstruction, VaeParityTest, ::testing::Values("l1", "l2"));

}  // namespace
}  // namespace loom::stages

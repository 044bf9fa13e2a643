// The PyTorch reference (bench/reference/loom_ref.py) computes what the C++ DiT stage
// computes: a tiny stage's loss and the gradient of every parameter, exported with
// WriteExport and recomputed by bench/reference/parity.py, agree to 1e-5 (relative L2 per
// tensor), and the export's tensor names are exactly the reference's state_dict names.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"           // NamedTensor, WriteSafetensors
#include "data/tokenizer.h"            // Tokenizer::kPad
#include "tests/support/subprocess.h"  // Run, TempDir
#include "train/dit_stage.h"           // DiTStage, EmptyCaption
#include "train/export.h"              // StageTensors, ModelBundle, WriteExport

namespace loom::train {
namespace {

namespace fs = std::filesystem;

const std::string kPython = LOOM_PYTHON;
const std::string kParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/parity.py";

// The objective of one case: schedule, prediction, loss weighting.
struct Objective {
  std::string schedule, prediction, loss_weight;
};

// Test listings show the objective, not its bytes.
void PrintTo(const Objective& o, std::ostream* os) { *os << o.schedule << "/" << o.prediction << "/" << o.loss_weight; }

// A stage small enough for a CPU test that still has every kind of layer: 2 DiT blocks,
// 1 text block, padded captions.
ExperimentOptions TinyOptions(const Objective& objective) {
  ExperimentOptions o;
  o.data.image_size = 16;
  o.data.channels = 1;
  o.data.max_tokens = 8;
  o.model.kind = "dit";
  o.model.patch = 4;
  o.model.width = 32;
  o.model.depth = 2;
  o.model.heads = 2;
  o.model.mlp_ratio = 4.0;
  o.model.text.width = 32;
  o.model.text.depth = 1;
  o.model.text.heads = 2;
  o.model.text.vocab = 64;
  o.diffusion.schedule = objective.schedule;
  o.diffusion.timesteps = 1000;
  o.diffusion.prediction = objective.prediction;
  o.diffusion.loss_weight = objective.loss_weight;
  o.diffusion.snr_gamma = 5.0;
  return o;
}

// The last line of a program's output.
std::string LastLine(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const size_t newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

class ParityTest : public ::testing::TestWithParam<Objective> {};

TEST_P(ParityTest, LossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: configure with "
                                   "-DLOOM_PYTHON=$HOME/.cache/loom/venv/bin/python (launch/setup.sh does)";
  ASSERT_TRUE(fs::exists(kPython)) << "LOOM_PYTHON " << kPython
                                   << " does not exist; run launch/setup.sh to create the venv";
  const ExperimentOptions options = TinyOptions(GetParam());
  // Built from the options the export's config describes, so config and weights agree.
  const auto dit_config = models::ResolveDiT(options.model, options.data.image_size, options.data.channels);
  ASSERT_TRUE(dit_config.ok()) << dit_config.status();
  const auto process = diffusion::GaussianDiffusion::Create(options.diffusion);
  ASSERT_TRUE(process.ok()) << process.status();

  torch::manual_seed(1234);
  DiTStage stage(*dit_config, options.model.text, options.data.max_tokens, *process);
  {
    // adaLN-Zero and the zeroed output layer would make most gradients exactly 0; noise
    // on every parameter makes every path carry signal.
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : stage->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }

  // Captions of 8, 5 and 3 tokens, and the empty caption (start token only).
  const int64_t B = 4, L = options.data.max_tokens;
  const torch::Tensor x0 = torch::rand({B, 1, 16, 16}) * 2 - 1;
  const torch::Tensor t = torch::tensor({0, 137, 640, 999}, torch::kLong);
  const torch::Tensor noise = torch::randn_like(x0);
  torch::Tensor tokens = torch::randint(3, options.model.text.vocab, {B, L}, torch::kLong);
  torch::Tensor mask = torch::zeros({B, L}, torch::kBool);
  const int64_t lengths[] = {8, 5, 3};
  for (int64_t i = 0; i < 3; ++i) mask[i].narrow(0, 0, lengths[i]).fill_(true);
  tokens.masked_fill_(mask.logical_not(), data::Tokenizer::kPad);
  EmptyCaption(tokens.narrow(0, 3, 1), mask.narrow(0, 3, 1));

  // The loss as DiTStageImpl::Loss computes it once t and noise are drawn (Bind's wiring).
  const torch::Tensor context = stage->text->forward(tokens, mask);  // [B, L, Dc]
  const diffusion::Denoiser model = [&](const torch::Tensor& x_t, const torch::Tensor& tt) {
    return stage->dit->forward(x_t, tt, context, mask);
  };
  const torch::Tensor losses = stage->diffusion.training_losses(model, x0, t, noise);  // [B]
  const torch::Tensor loss = losses.mean();
  loss.backward();

  testing::TempDir dir;
  ModelBundle bundle;
  bundle.options = options;
  bundle.tensors = StageTensors(*stage);
  bundle.step = 0;
  bundle.weights = "raw";
  bundle.source = "parity_test";
  const std::string export_dir = dir.str() + "/export";
  const absl::Status written = WriteExport(bundle, export_dir, "fp32");
  ASSERT_TRUE(written.ok()) << written;

  std::vector<NamedTensor> expected = {{"loss", loss.detach().reshape({1})}, {"losses", losses.detach()}};
  for (const auto& param : stage->named_parameters()) {
    const torch::Tensor& grad = param.value().grad();
    ASSERT_TRUE(grad.defined()) << param.key() << " has no gradient";
    // Softmax ignores a bias shared by all keys: the key biases' gradient is rounding noise
    // (parity.py measures it against the whole gradient). Every other one must be live.
    if (!param.key().ends_with(".k.bias")) {
      EXPECT_GT(grad.norm().item<double>(), 1e-8) << param.key() << ": a vanishing gradient checks nothing";
    }
    expected.push_back({"grad/" + param.key(), grad});
  }
  const std::string inputs_path = dir.str() + "/inputs.safetensors";
  const std::string expected_path = dir.str() + "/expected.safetensors";
  ASSERT_TRUE(WriteSafetensors(inputs_path, {{"x0", x0}, {"t", t}, {"noise", noise}, {"tokens", tokens},
                                             {"mask", mask}}).ok());
  ASSERT_TRUE(WriteSafetensors(expected_path, expected).ok());

  const testing::Result r = testing::Run(kPython + " " + kParity + " --export " + export_dir + " --inputs " +
                                         inputs_path + " --expected " + expected_path + " --tolerance 1e-5");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json report = nlohmann::json::parse(LastLine(r.out), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(report.is_discarded()) << "the last line is not JSON:\n" << r.out << r.err;
  EXPECT_TRUE(report["names_match"].get<bool>()) << r.out;
  EXPECT_LE(report["loss_rel_err"].get<double>(), 1e-5) << r.out;
  EXPECT_LE(report["losses_rel_err"].get<double>(), 1e-5) << r.out;
  EXPECT_LE(report["max_grad_rel_err"].get<double>(), 1e-5) << "worst: " << report["worst_grad"] << "\n" << r.out;
  EXPECT_EQ(report["grads_checked"].get<size_t>(), stage->parameters().size());
}

INSTANTIATE_TEST_SUITE_P(Objectives, ParityTest,
                         ::testing::Values(Objective{"cosine", "v", "min_snr"},
                                           Objective{"linear", "eps", "uniform"}),
                         [](const ::testing::TestParamInfo<Objective>& info) {
                           return info.param.schedule + "_" + info.param.prediction + "_" + info.param.loss_weight;
                         });

}  // namespace
}  // namespace loom::train

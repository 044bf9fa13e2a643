// The PyTorch reference (bench/reference/loom_ref.py) computes what the C++ DiT stage
// computes: a tiny stage's loss and the gradient of every parameter, exported with
// WriteExport and recomputed by bench/reference/parity.py, agree to 1e-5 (relative L2 per
// tensor), and the export's tensor names are exactly the reference's state_dict names.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config/load.h"          // LoadString
#include "core/safetensors.h"           // NamedTensor, WriteSafetensors
#include "data/tokenizer.h"            // Tokenizer::kPad
#include "pipeline/export.h"           // WriteExport
#include "pipeline/model.h"            // LoadedModel
#include "stages/dit_stage.h"          // DiTStage, EmptyCaption
#include "stages/registry.h"           // MakeStage
#include "tests/support/subprocess.h"  // Run, TempDir

namespace loom::stages {
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
train::ExperimentOptions TinyOptions(const Objective& objective, const std::string& tokenizer) {
  const std::string yaml =
      "data: {image_size: 16, channels: 1, max_tokens: 8, tokenizer: " + tokenizer + "}\n"
      "stage:\n"
      "  kind: dit\n"
      "  model: {patch: 4, width: 32, depth: 2, heads: 2, mlp_ratio: 4.0, text: {width: 32, depth: 1, heads: 2, vocab: 64}}\n"
      "  diffusion: {schedule: " + objective.schedule + ", timesteps: 1000, prediction: " + objective.prediction +
      ", loss_weight: " + objective.loss_weight + ", snr_gamma: 5.0}\n";
  auto o = config::LoadString<train::ExperimentOptions>(yaml, "parity.yaml");
  EXPECT_TRUE(o.ok()) << o.status();
  return *o;
}

// The last line of a program's output.
class ParityTest : public ::testing::TestWithParam<Objective> {};

TEST_P(ParityTest, LossAndEveryGradientMatchThePyTorchReference) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: configure with "
                                   "-DLOOM_PYTHON=$HOME/.cache/loom/venv/bin/python (launch/setup.sh does)";
  ASSERT_TRUE(fs::exists(kPython)) << "LOOM_PYTHON " << kPython
                                   << " does not exist; run launch/setup.sh to create the venv";
  testing::TempDir dir;
  // A tokenizer file for the stage to carry (its ids are not used: tokens are drawn below).
  std::vector<std::string> captions;
  for (int i = 0; i < 50; ++i) captions.push_back("a photo of thing " + std::to_string(i));
  const auto trained = data::Tokenizer::Train(captions, 40);
  ASSERT_TRUE(trained.ok()) << trained.status();
  ASSERT_TRUE((*trained)->Save(dir.str() + "/tokenizer.model").ok());
  const train::ExperimentOptions options = TinyOptions(GetParam(), dir.str() + "/tokenizer.model");
  // Made by the registry from the options the export's config describes, so config and
  // weights agree.
  torch::manual_seed(1234);
  StageInputs in;
  in.options = &options.stage;
  in.data = options.data;
  const auto made = MakeStage(in);
  ASSERT_TRUE(made.ok()) << made.status();
  auto stage = std::dynamic_pointer_cast<DiTStage>(*made);
  ASSERT_NE(stage, nullptr);
  const int64_t vocab = options.stage.As<DiTStageOptions>()->model.text.vocab;
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
  torch::Tensor tokens = torch::randint(3, vocab, {B, L}, torch::kLong);
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
  const torch::Tensor losses = stage->diffusion->training_losses(model, x0, t, noise);  // [B]
  const torch::Tensor loss = losses.mean();
  loss.backward();

  pipeline::LoadedModel loaded;
  loaded.stage = stage;
  loaded.options = options;
  loaded.kind = "dit";
  loaded.weights = "raw";
  loaded.source = "parity_test";
  const std::string export_dir = dir.str() + "/export";
  const absl::Status written = pipeline::WriteExport(loaded, export_dir, {});
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
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(r.out), nullptr, /*allow_exceptions=*/false);
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
}  // namespace loom::stages

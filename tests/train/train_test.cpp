// `loom train` end to end on real Fashion-MNIST shards (the first 512 per split): the
// tiny config trains at 1, 2 and 4 ranks and its loss falls; 2 ranks follow the 1-rank
// loss trajectory (same global batch); bad input fails before anything is written; the
// final weights load in Python's safetensors, and the TensorBoard events in TensorBoard.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/curves.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::Mean;

const std::string kLoom = LOOM_BINARY;
const std::string kConfig = std::string(LOOM_SOURCE_DIR) + "/configs/tiny.yaml";

class TrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new testing::TempDir();
    const std::string out = data_->str() + "/fm";
    ASSERT_EQ(testing::Run(kLoom + " data fashion-mnist --out " + out + " --limit 512").code, 0);
    ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + out + "/train --vocab 64").code, 0);
  }
  static void TearDownTestSuite() { delete data_; }

  // Runs the tiny config on `np` ranks into a fresh run directory; returns its losses.
  std::vector<double> TrainTiny(int np, const std::string& extra = "") {
    const std::string runs = dir_.str() + "/runs" + std::to_string(np);
    const testing::Result r = testing::Run(
        std::string(LOOM_MPIRUN) + " -np " + std::to_string(np) + " " + kLoom + " train " + kConfig +
        " data.train=" + data_->str() + "/fm/train run.dir=" + runs +
        " train.steps=60 train.log_every=1 train.sample_every=0 " + extra);
    EXPECT_EQ(r.code, 0) << r.err;
    std::vector<double> losses;
    std::ifstream in(runs + "/tiny/metrics.jsonl");
    for (std::string line; std::getline(in, line);) losses.push_back(nlohmann::json::parse(line)["loss"]);
    return losses;
  }

  static testing::TempDir* data_;
  testing::TempDir dir_;
};
testing::TempDir* TrainTest::data_ = nullptr;

TEST_F(TrainTest, LossFallsAtOneTwoAndFourRanks) {
  for (int np : {1, 2, 4}) {
    const std::vector<double> losses = TrainTiny(np);
    ASSERT_EQ(losses.size(), 60u) << np;
    EXPECT_LT(Mean(losses, 50, 60), Mean(losses, 0, 10)) << "ranks " << np;
  }
}

TEST_F(TrainTest, Bf16AutocastTrainsAndStaysNearFp32) {
  const std::vector<double> fp32 = TrainTiny(2);
  const std::vector<double> bf16 = TrainTiny(2, "train.precision=bf16 run.name=bf16");
  ASSERT_EQ(bf16.size(), fp32.size());
  EXPECT_LT(Mean(bf16, 50, 60), Mean(bf16, 0, 10));
  // bfloat16 keeps ~3 significant digits: the first steps' losses agree to a few percent.
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(bf16[i], fp32[i], 0.05 * fp32[i]) << "step " << i + 1;
}

TEST_F(TrainTest, TwoRanksFollowTheOneRankTrajectory) {
  const std::vector<double> one = TrainTiny(1), two = TrainTiny(2);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-4 * std::abs(one[i])) << "step " << i + 1;
}

TEST_F(TrainTest, ZeroStrategiesFollowDdp) {
  const std::vector<double> ddp = TrainTiny(2);
  for (const char* s : {"zero2", "zero3"}) {
    const std::vector<double> other = TrainTiny(2, std::string("dist.strategy=") + s + " run.name=" + s);
    ASSERT_EQ(other.size(), ddp.size());
    // Losses here are from different runs; sum over steps must match closely.
    for (size_t i = 0; i < ddp.size(); ++i) EXPECT_NEAR(other[i], ddp[i], 1e-4 * std::abs(ddp[i])) << s << " " << i;
  }
}

// Runs the tiny config (12 steps, checkpoints every 3) into runs/NAME; returns the code.
int RunTiny(const std::string& runs, const std::string& name, int np, int steps, const std::string& extra,
        const std::string& data, const std::string& env = "") {
  const testing::Result r = testing::Run(
      env + std::string(LOOM_MPIRUN) + " -np " + std::to_string(np) + " " + kLoom + " train " + kConfig +
      " data.train=" + data + " run.dir=" + runs + " run.name=" + name + " train.steps=" + std::to_string(steps) +
      " train.log_every=1 train.sample_every=0 train.checkpoint_every=3 " + extra);
  return r.code;
}

TEST_F(TrainTest, ResumeIsBitwiseExactForDdpAndZero2) {
  const std::string runs = dir_.str() + "/resume", data = data_->str() + "/fm/train";
  for (const char* s : {"ddp", "zero2"}) {
    const std::string extra = std::string("dist.strategy=") + s;
    ASSERT_EQ(RunTiny(runs, std::string("straight-") + s, 2, 12, extra, data), 0);
    ASSERT_EQ(RunTiny(runs, std::string("resumed-") + s, 2, 6, extra, data), 0);
    ASSERT_EQ(RunTiny(runs, std::string("resumed-") + s, 2, 12, extra, data), 0);
    EXPECT_TRUE(testing::ReadAll(runs + "/straight-" + s + "/model.safetensors") ==
                testing::ReadAll(runs + "/resumed-" + s + "/model.safetensors"))
        << s << ": resumed weights differ";
  }
}

TEST_F(TrainTest, ResumeAtAnotherWorldSizeAndStrategy) {
  const std::string runs = dir_.str() + "/world", data = data_->str() + "/fm/train";
  ASSERT_EQ(RunTiny(runs, "straight", 2, 12, "", data), 0);
  // Saved at 2 ranks with ddp; resumed at 1 rank with zero3, and at 4 ranks with zero2.
  ASSERT_EQ(RunTiny(runs, "to1", 2, 6, "", data), 0);
  ASSERT_EQ(RunTiny(runs, "to1", 1, 12, "dist.strategy=zero3", data), 0);
  ASSERT_EQ(RunTiny(runs, "to4", 2, 6, "", data), 0);
  ASSERT_EQ(RunTiny(runs, "to4", 4, 12, "dist.strategy=zero2", data), 0);
  const auto losses = [&](const std::string& name) {
    std::vector<double> out;
    std::ifstream in(runs + "/" + name + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)["loss"]);
    return out;
  };
  const std::vector<double> a = losses("straight");
  for (const char* name : {"to1", "to4"}) {
    const std::vector<double> b = losses(name);
    ASSERT_EQ(a.size(), b.size()) << name;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 * std::abs(a[i])) << name << " step " << i + 1;
  }
}

TEST_F(TrainTest, ACrashAtAnyPointOfASaveNeverLoadsAWrongCheckpoint) {
  const std::string runs = dir_.str() + "/crash", data = data_->str() + "/fm/train";
  ASSERT_EQ(RunTiny(runs, "straight", 1, 6, "", data), 0);
  const std::string want = testing::ReadAll(runs + "/straight/model.safetensors");
  // 6 fault points per checkpoint; 7..12 fall inside the second save (step 6), the last
  // one after its rename, before the final weights.
  for (int k = 7; k <= 12; ++k) {
    const std::string name = "crash" + std::to_string(k);
    EXPECT_EQ(RunTiny(runs, name, 1, 6, "", data, "LOOM_FAULT_CHECKPOINT_FILES=" + std::to_string(k) + " "), 86) << k;
    ASSERT_EQ(RunTiny(runs, name, 1, 6, "", data), 0) << "resume after a crash at point " << k;
    EXPECT_TRUE(testing::ReadAll(runs + "/" + name + "/model.safetensors") == want) << "crash at point " << k;
  }
}

TEST_F(TrainTest, BadInputFailsBeforeWritingAnything) {
  const std::string runs = dir_.str() + "/bad";
  const auto fails = [&](const std::string& cmd, const std::string& fragment) {
    const testing::Result r = testing::Run(cmd);
    EXPECT_EQ(r.code, 2) << cmd << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(runs + "/tiny")) << cmd;
  };
  const std::string train = kLoom + " train " + kConfig + " run.dir=" + runs + " ";
  fails(std::string(LOOM_MPIRUN) + " -np 3 " + train + "data.train=" + data_->str() + "/fm/train",
        "does not divide by the world size 3");
  fails(train + "data.train=" + dir_.str() + "/nothing", "no manifest");
  fails(train + "data.train=" + data_->str() + "/fm/test", "no tokenizer");
  fails(train + "data.train=" + data_->str() + "/fm/train data.channels=3", "data.channels is 3");
  fails(train + "data.train=" + data_->str() + "/fm/train stage.model.size=Q/4", "not a registered DiT size");
  fails(train + "data.train=" + data_->str() + "/fm/train stage.kind=unet", "'unet' is not a kind; one of 'dit', 'vae'");
  fails(train + "data.train=" + data_->str() + "/fm/train stage.disc.enabled=true",
        "stage.disc: is an option of stage.kind 'vae', not of 'dit'");
  fails(train + "data.train=" + data_->str() + "/fm/train stage.vae=" + dir_.str() + "/none",
        "stage.vae: " + dir_.str() + "/none: no such export directory");
  // A run resumed with another model, objective, data or seed is refused, saying what
  // changed, and nothing of it is changed.
  const std::string other = dir_.str() + "/other";
  ASSERT_EQ(RunTiny(other, "tiny", 1, 3, "", data_->str() + "/fm/train"), 0);
  const std::string checkpoint = testing::ReadAll(other + "/tiny/checkpoints/step-0000003/rank-00000.safetensors");
  fs::copy(data_->str() + "/fm/train", dir_.str() + "/copy", fs::copy_options::recursive);
  for (const auto& [change, shown] : std::vector<std::pair<std::string, std::string>>{
           {"stage.model.width=64", "stage.model.width 32 -> 64"},
           {"stage.diffusion.prediction=eps", "stage.diffusion.prediction v -> eps"},
           {"run.seed=7", "run.seed 1 -> 7"},
           {"data.train=" + dir_.str() + "/copy", "data.train"}}) {
    const testing::Result r = testing::Run(kLoom + " train " + kConfig + " data.train=" + data_->str() +
                                           "/fm/train run.dir=" + other + " train.steps=6 " + change);
    EXPECT_EQ(r.code, 2) << change;
    EXPECT_NE(r.err.find("was started with another config (" + shown), std::string::npos) << change << ": " << r.err;
  }
  // Keys that steer only the loop may change.
  EXPECT_EQ(testing::Run(kLoom + " train " + kConfig + " data.train=" + data_->str() + "/fm/train run.dir=" + other +
                         " train.steps=4 train.log_every=2 optim.lr=5e-4").code, 0);
  EXPECT_TRUE(checkpoint == testing::ReadAll(other + "/tiny/checkpoints/step-0000003/rank-00000.safetensors"));
}

TEST_F(TrainTest, ANonFiniteLossStopsNamingStepAndRankAndKeepsTheCheckpoints) {
  const std::string runs = dir_.str() + "/nan", data = data_->str() + "/fm/train";
  // Rank 1's loss turns NaN at step 5: the job ends, naming both; the step-3 checkpoint
  // survives and the run resumes from it (without the fault) to the end.
  const testing::Result r = testing::Run("LOOM_FAULT_NAN_LOSS=5:1 " + std::string(LOOM_MPIRUN) + " -np 2 " + kLoom +
                                         " train " + kConfig + " data.train=" + data + " run.dir=" + runs +
                                         " run.name=stop train.steps=9 train.log_every=1 train.sample_every=0"
                                         " train.checkpoint_every=3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("step 5: the loss is not finite on rank 1"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(runs + "/stop/checkpoints/step-0000003/state.json"));
  EXPECT_FALSE(fs::exists(runs + "/stop/model.safetensors"));
  ASSERT_EQ(RunTiny(runs, "stop", 2, 9, "", data), 0);
  ASSERT_EQ(RunTiny(runs, "straight", 2, 9, "", data), 0);
  EXPECT_TRUE(testing::ReadAll(runs + "/stop/model.safetensors") == testing::ReadAll(runs + "/straight/model.safetensors"))
      << "the run resumed after the stop differs from a straight one";
}

TEST_F(TrainTest, ANonFiniteLossIsSkippedWhenConfigured) {
  const std::string runs = dir_.str() + "/nanskip", data = data_->str() + "/fm/train";
  ASSERT_EQ(RunTiny(runs, "skip", 2, 9, "train.on_nan=skip", data, "LOOM_FAULT_NAN_LOSS=5:0 "), 0);
  std::vector<nlohmann::json> rows;
  std::ifstream in(runs + "/skip/metrics.jsonl");
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_TRUE(rows[4]["loss"].is_null()) << rows[4];  // NaN is written as null
  EXPECT_EQ(rows[3]["skipped_steps"], 0);
  EXPECT_EQ(rows[8]["skipped_steps"], 1);
  EXPECT_TRUE(rows[8]["loss"].is_number()) << rows[8];
  // Had the step's NaN gradients been applied, every weight would be NaN now.
  const std::string py = LOOM_PYTHON;
  if (py.empty()) return;
  const testing::Result r = testing::Run(py + " -c \"from safetensors.torch import load_file; import torch; d = load_file('" +
                                         runs + "/skip/model.safetensors'); print(all(bool(torch.isfinite(t).all()) for t in d.values()))\"");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("True"), std::string::npos) << r.out;
}

TEST_F(TrainTest, SampleIsReproducibleBySeed) {
  TrainTiny(1, "train.steps=3");
  const std::string run = dir_.str() + "/runs1/tiny", out = dir_.str() + "/s";
  const auto sample = [&](int seed, const std::string& file) {
    const testing::Result r = testing::Run(kLoom + " sample --model " + run + " --prompt 'a photo of a bag' --n 3 --steps 8 --seed " +
                                           std::to_string(seed) + " --out " + file);
    EXPECT_EQ(r.code, 0) << r.err;
    return testing::ReadAll(file);
  };
  const std::string a = sample(3, out + "a.png"), b = sample(3, out + "b.png"), c = sample(4, out + "c.png");
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "the same seed gave different images";
  EXPECT_FALSE(a == c) << "another seed gave the same images";
}

TEST_F(TrainTest, WeightsLoadInPythonSafetensors) {
  TrainTiny(1, "train.steps=3");
  const std::string py = LOOM_PYTHON;
  if (py.empty()) GTEST_SKIP() << "no Python venv configured (launch/setup.sh sets LOOM_PYTHON)";
  const testing::Result r = testing::Run(
      py + " -c \"from safetensors.torch import load_file; d = load_file('" + dir_.str() +
      "/runs1/tiny/model.safetensors'); print(len(d), tuple(d['dit.final_linear.weight'].shape))\"");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(16, 32)"), std::string::npos) << r.out;
}

TEST_F(TrainTest, TensorBoardReadsTheEventsOfAStoppedAndResumedRun) {
  const std::string py = LOOM_PYTHON;
  if (py.empty()) GTEST_SKIP() << "no Python venv configured (launch/setup.sh sets LOOM_PYTHON)";
  if (testing::Run(py + " -c 'import tensorboard'").code != 0) {
    GTEST_SKIP() << "the venv's Python has no tensorboard package (launch/setup.sh installs it)";
  }
  const std::string runs = dir_.str() + "/tensorboard", data = data_->str() + "/fm/train";
  // Stopped at step 5 after logging step 4 past its step-3 checkpoint, then resumed from
  // step 3: TensorBoard must show each step once, with the resumed run's figures.
  EXPECT_NE(RunTiny(runs, "tb", 1, 6, "train.sample_every=3", data, "LOOM_FAULT_NAN_LOSS=5:0 "), 0);
  ASSERT_EQ(RunTiny(runs, "tb", 1, 6, "train.sample_every=3", data), 0);
  int files = 0;
  for (const auto& e : fs::directory_iterator(runs + "/tb")) {
    files += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_EQ(files, 2) << "one event file per process";
  const testing::Result r = testing::Run(py + " " + LOOM_SOURCE_DIR + "/tests/train/tensorboard_check.py " + runs + "/tb");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("tensorboard-ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" 2\n"), std::string::npos) << "two previews (steps 3 and 6): " << r.out;

  ASSERT_EQ(RunTiny(runs, "off", 1, 2, "train.tensorboard=false", data), 0);
  for (const auto& e : fs::directory_iterator(runs + "/off")) {
    EXPECT_EQ(e.path().filename().string().find("tfevents"), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace loom

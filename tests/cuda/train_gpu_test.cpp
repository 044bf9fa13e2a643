// `loom train` on a GPU, driven as a user would at world size 1: the tiny config trains
// on the device under every strategy and its loss falls; fp32 on the GPU starts where the
// CPU run starts; bf16 stays near fp32; a run resumed from its checkpoint follows the
// straight run. launch/gpu_check.sh runs it on a GPU machine; where no GPU is found every
// test is skipped with the reason.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/curves.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

using testing::Mean;

// A singleton MPI process needs no launcher daemon (a GPU machine may have no mpirun).
const std::string kLoom = "OMPI_MCA_ess_singleton_isolated=1 " + std::string(LOOM_BINARY);
const std::string kConfig = std::string(LOOM_SOURCE_DIR) + "/configs/tiny.yaml";

// Whether the binary itself sees a GPU (`loom info`), asked once.
bool Cuda() {
  static const bool cuda = [] {
    const testing::Result r = testing::Run(kLoom + " info");
    if (r.code != 0) {
      ADD_FAILURE() << "loom info failed: " << r.err;
      return false;
    }
    return nlohmann::json::parse(testing::LastLine(r.out)).value("cuda_available", false);
  }();
  return cuda;
}

#define SKIP_WITHOUT_CUDA() \
  if (!Cuda()) GTEST_SKIP() << "no CUDA device on this machine (loom info): the CUDA checks run on a GPU machine (launch/gpu_check.sh)"

class TrainGpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!Cuda()) return;
    data_ = new testing::TempDir();
    // Synthetic shapes: made here, so the GPU machine needs no dataset package.
    const std::string out = data_->str() + "/shapes";
    ASSERT_EQ(testing::Run(kLoom + " data shapes --out " + out + " --count 512 --size 16").code, 0);
    ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + out + " --vocab 64").code, 0);
  }
  static void TearDownTestSuite() { delete data_; }

  // Trains the tiny config for 40 steps into run `name`; returns its losses and the log.
  std::pair<std::vector<double>, std::string> Train(const std::string& name, const std::string& extra = "",
                                                    const std::string& env = "") {
    const std::string runs = dir_.str() + "/runs";
    const testing::Result r = testing::Run(
        env + " " + kLoom + " train " + kConfig + " data.train=" + data_->str() + "/shapes data.channels=3 run.dir=" +
        runs + " run.name=" + name + " train.steps=40 train.log_every=1 train.sample_every=0 " + extra);
    EXPECT_EQ(r.code, 0) << r.err;
    std::vector<double> losses;
    std::ifstream in(runs + "/" + name + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j.contains("loss") && j.contains("lr")) losses.push_back(j["loss"]);
    }
    return {losses, r.out + r.err};
  }

  static testing::TempDir* data_;
  testing::TempDir dir_;
};
testing::TempDir* TrainGpuTest::data_ = nullptr;

TEST_F(TrainGpuTest, EveryStrategyTrainsOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  for (const std::string strategy : {"ddp", "zero1", "zero2", "zero3"}) {
    const auto [losses, log] = Train(strategy, "dist.strategy=" + strategy);
    EXPECT_NE(log.find("on cuda"), std::string::npos) << strategy << ": not on the GPU:\n" << log;
    ASSERT_EQ(losses.size(), 40u) << strategy;
    EXPECT_LT(Mean(losses, 30, 40), Mean(losses, 0, 10)) << strategy;
  }
}

TEST_F(TrainGpuTest, Fp32OnTheGpuStartsWhereTheCpuStarts) {
  SKIP_WITHOUT_CUDA();
  const auto gpu = Train("gpu").first;
  const auto cpu = Train("cpu", "", "CUDA_VISIBLE_DEVICES=").first;
  ASSERT_EQ(gpu.size(), cpu.size());
  // Same weights, batches and draws; kernels differ (cuDNN convolutions may round
  // through TF32), so the losses agree to a fraction of a percent, not bitwise.
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(gpu[i], cpu[i], 1e-2 * std::abs(cpu[i])) << "step " << i + 1;
}

TEST_F(TrainGpuTest, Bf16StaysNearFp32) {
  SKIP_WITHOUT_CUDA();
  const auto fp32 = Train("fp32").first;
  const auto bf16 = Train("bf16", "train.precision=bf16").first;
  ASSERT_EQ(bf16.size(), fp32.size());
  EXPECT_LT(Mean(bf16, 30, 40), Mean(bf16, 0, 10));
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(bf16[i], fp32[i], 0.05 * fp32[i]) << "step " << i + 1;
}

TEST_F(TrainGpuTest, ResumedRunFollowsTheStraightRun) {
  SKIP_WITHOUT_CUDA();
  for (const std::string strategy : {"ddp", "zero3"}) {
    const auto straight = Train("straight-" + strategy, "dist.strategy=" + strategy).first;
    // The same run stopped at step 20 (its last checkpoint), then carried on to 40.
    Train("resumed-" + strategy, "dist.strategy=" + strategy + " train.steps=20");
    const auto resumed = Train("resumed-" + strategy, "dist.strategy=" + strategy).first;
    ASSERT_EQ(resumed.size(), straight.size()) << strategy;
    // GPU kernels may reduce in another order from run to run: near, not bitwise.
    for (size_t i = 20; i < 40; ++i) EXPECT_NEAR(resumed[i], straight[i], 1e-4 * std::abs(straight[i])) << i;
  }
}

}  // namespace
}  // namespace loom

// The pixel DiT's loss curve on the tiny config (tests/train/golden/), recorded by the
// trainer before it moved onto stages, reproduced bit for bit at 1 and 2 ranks. Float
// kernels differ between instruction sets (the recording names its own): on another one
// the curve must still agree within 1e-4.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/subprocess.h"

namespace loom {
namespace {

const std::string kLoom = LOOM_BINARY;

struct Golden {
  std::string isa;
  std::vector<double> losses;
};

Golden ReadGolden(int np) {
  Golden g;
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/tests/train/golden/dit_tiny_np" + std::to_string(np) + ".txt");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind('#', 0) == 0) {
      const size_t at = line.find("isa: ");
      if (at != std::string::npos) g.isa = line.substr(at + 5);
      continue;
    }
    std::istringstream fields(line);
    int step = 0;
    double loss = 0;
    fields >> step >> loss;
    g.losses.push_back(loss);
  }
  return g;
}

// What the float kernels dispatch on here: the vendor and the widest instruction sets.
std::string Isa() {
  std::ifstream in("/proc/cpuinfo");
  std::stringstream s;
  s << in.rdbuf();
  const std::string info = s.str();
  std::string isa = info.find("GenuineIntel") != std::string::npos ? "intel" : "other";
  if (info.find(" avx512f") != std::string::npos) isa += " avx512";
  if (info.find(" amx_tile") != std::string::npos) isa += " amx";
  return isa;
}

class GoldenTest : public ::testing::TestWithParam<int> {};

TEST_P(GoldenTest, TheTinyDiTFollowsItsRecordedLossCurve) {
  const int np = GetParam();
  const Golden golden = ReadGolden(np);
  ASSERT_EQ(golden.losses.size(), 30u);
  testing::TempDir dir;
  ASSERT_EQ(testing::Run(kLoom + " data fashion-mnist --out " + dir.str() + "/fm --limit 512").code, 0);
  ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + dir.str() + "/fm/train --vocab 64").code, 0);
  const std::string launcher = np == 1 ? "" : std::string(LOOM_MPIRUN) + " -np " + std::to_string(np) + " ";
  const testing::Result r = testing::Run(
      "LOOM_THREADS=1 " + launcher + kLoom + " train " + LOOM_SOURCE_DIR + "/configs/tiny.yaml data.train=" +
      dir.str() + "/fm/train run.dir=" + dir.str() + "/runs train.steps=30 train.log_every=1 train.sample_every=0 "
      "train.checkpoint_every=0");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<double> losses;
  std::ifstream in(dir.str() + "/runs/tiny/metrics.jsonl");
  for (std::string line; std::getline(in, line);) losses.push_back(nlohmann::json::parse(line)["loss"]);
  ASSERT_EQ(losses.size(), golden.losses.size());
  const bool bitwise = Isa() == golden.isa;
  for (size_t i = 0; i < losses.size(); ++i) {
    if (bitwise) {
      EXPECT_EQ(losses[i], golden.losses[i]) << "step " << i + 1;
    } else {
      EXPECT_NEAR(losses[i], golden.losses[i], 1e-4 * std::abs(golden.losses[i])) << "step " << i + 1;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, GoldenTest, ::testing::Values(1, 2));

}  // namespace
}  // namespace loom

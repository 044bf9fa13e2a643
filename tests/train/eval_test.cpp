// Judged evaluation and export, driving the binary on real Fashion-MNIST shards (the
// first 512 per split): the judge trains and reports its accuracy; `eval prompts` reports
// prompt accuracy and Fréchet distances and refuses a judge of other images; the trainer
// logs evaluations; an export records its kind and samples exactly like its run, in bf16
// too; a damaged one is refused, naming the file; a re-export is atomic.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

const std::string kLoom = LOOM_BINARY;
const std::string kConfig = std::string(LOOM_SOURCE_DIR) + "/configs/tiny.yaml";

nlohmann::json LastJson(const std::string& out) {
  const size_t at = out.rfind("\n{");
  return nlohmann::json::parse(at == std::string::npos ? out : out.substr(at + 1));
}

class EvalTest : public ::testing::Test {
 protected:
  // Data, a tiny model (20 steps) and a judge for its 16x16 images.
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const std::string d = dir_->str();
    ASSERT_EQ(testing::Run(kLoom + " data fashion-mnist --out " + d + "/fm --limit 512").code, 0);
    ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + d + "/fm/train --vocab 64").code, 0);
    const testing::Result train = testing::Run(kLoom + " train " + kConfig + " data.train=" + d + "/fm/train run.dir=" +
                                               d + "/runs train.steps=20 train.checkpoint_every=10");
    ASSERT_EQ(train.code, 0) << train.err;
    judge_ = new testing::Result(testing::Run(kLoom + " eval classifier --data " + d + "/fm --out " + d +
                                              "/judge --image-size 16 --fit resize --epochs 4 --batch 64"));
    ASSERT_EQ(judge_->code, 0) << judge_->err;
  }
  static void TearDownTestSuite() {
    delete judge_;
    delete dir_;
  }
  static std::string Run() { return dir_->str() + "/runs/tiny"; }
  static std::string Judge() { return dir_->str() + "/judge"; }

  static testing::TempDir* dir_;
  static testing::Result* judge_;
  testing::TempDir tmp_;
};
testing::TempDir* EvalTest::dir_ = nullptr;
testing::Result* EvalTest::judge_ = nullptr;

TEST_F(EvalTest, TheJudgeLearnsTheClasses) {
  const nlohmann::json j = LastJson(judge_->out);
  // 512 training images, 4 epochs: far above chance (0.1), far from perfect.
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.4) << j;
  EXPECT_EQ(j["test_samples"], 512);
  EXPECT_TRUE(fs::exists(Judge() + "/judge.json"));
  EXPECT_TRUE(fs::exists(Judge() + "/reference.safetensors"));
}

TEST_F(EvalTest, PromptsReportAccuracyAndFrechetDistances) {
  const testing::Result r = testing::Run(kLoom + " eval prompts --model " + Run() + " --judge " + Judge() +
                                         " --per-class 3 --steps 4");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = LastJson(r.out);
  const double acc = j["prompt_accuracy"];
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  EXPECT_EQ(j["samples"], 4 * 10 * 3);
  ASSERT_EQ(j["templates"].size(), 4u);
  EXPECT_EQ(j["templates"][2]["template"], "an illustration of {a_class}");
  EXPECT_EQ(j["per_class_accuracy"].size(), 10u);
  EXPECT_TRUE(j["per_class_accuracy"].contains("ankle boot")) << j;
  // A 20-step model is far from the data; real training images are close to real test ones.
  EXPECT_GE(j["frechet_floor"].get<double>(), 0.0);
  EXPECT_GT(j["frechet"].get<double>(), j["frechet_floor"].get<double>()) << j;
}

TEST_F(EvalTest, CustomTemplatesAreUsed) {
  const testing::Result r = testing::Run(kLoom + " eval prompts --model " + Run() + " --judge " + Judge() +
                                         " --per-class 1 --steps 2 --template 'a {class} on a shelf'");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = LastJson(r.out);
  ASSERT_EQ(j["templates"].size(), 1u);
  EXPECT_EQ(j["samples"], 10);
}

TEST_F(EvalTest, AJudgeOfOtherImagesIsRefused) {
  const std::string other = tmp_.str() + "/judge32";
  ASSERT_EQ(testing::Run(kLoom + " eval classifier --data " + dir_->str() + "/fm --out " + other +
                         " --image-size 32 --fit pad --epochs 1 --batch 128")
                .code,
            0);
  const testing::Result r = testing::Run(kLoom + " eval prompts --model " + Run() + " --judge " + other);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--image-size 16 --fit resize"), std::string::npos) << r.err;
}

TEST_F(EvalTest, TheTrainerLogsEvaluations) {
  const std::string runs = tmp_.str() + "/runs";
  const testing::Result r = testing::Run(kLoom + " train " + kConfig + " data.train=" + dir_->str() + "/fm/train run.dir=" +
                                         runs + " train.steps=10 train.eval_every=5 stage.eval.judge=" + Judge() +
                                         " stage.eval.per_class=1 stage.eval.steps=2");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<int> steps;
  std::ifstream in(runs + "/tiny/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json row = nlohmann::json::parse(line);
    if (row.contains("prompt_accuracy")) {
      steps.push_back(row["step"]);
      EXPECT_TRUE(row.contains("loss"));
      EXPECT_TRUE(row.contains("frechet"));
    }
  }
  EXPECT_EQ(steps, (std::vector<int>{5, 10}));
  // train.eval_every without a judge is refused before anything is written.
  const testing::Result bad = testing::Run(kLoom + " train " + kConfig + " data.train=" + dir_->str() +
                                           "/fm/train run.dir=" + runs + " run.name=nojudge train.eval_every=5");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("stage.eval.judge is empty"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(runs + "/nojudge"));
}

TEST_F(EvalTest, AnExportSamplesLikeItsRun) {
  const std::string fp32 = tmp_.str() + "/fp32", bf16 = tmp_.str() + "/bf16";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run() + " --out " + fp32).code, 0);
  const testing::Result b = testing::Run(kLoom + " export " + Run() + "/checkpoints/step-0000020 --out " + bf16 + " --dtype bf16");
  ASSERT_EQ(b.code, 0) << b.err;
  for (const char* f : {"model.safetensors", "config.json", "config.yaml", "tokenizer.model"}) {
    EXPECT_TRUE(fs::exists(fp32 + "/" + f)) << f;
  }
  const nlohmann::json info = nlohmann::json::parse(testing::ReadAll(bf16 + "/config.json"));
  EXPECT_EQ(info["format"], "loom-export");
  EXPECT_EQ(info["kind"], "dit");
  EXPECT_EQ(info["hash"].get<std::string>().size(), 64u);
  EXPECT_EQ(info["dtype"], "bf16");
  EXPECT_EQ(info["step"], 20);
  EXPECT_EQ(info["model"]["image_size"], 16);
  const auto sample = [&](const std::string& model, const std::string& png) {
    const testing::Result r = testing::Run(kLoom + " sample --model " + model + " --prompt 'a sneaker' --n 2 --steps 6 --out " + png);
    EXPECT_EQ(r.code, 0) << r.err;
    return testing::ReadAll(png);
  };
  const std::string from_run = sample(Run(), tmp_.str() + "/run.png");
  EXPECT_FALSE(from_run.empty());
  EXPECT_TRUE(sample(fp32, tmp_.str() + "/fp32.png") == from_run) << "the fp32 export samples differently from its run";
  EXPECT_FALSE(sample(bf16, tmp_.str() + "/bf16.png").empty());
  // The bf16 file is about half the size of the fp32 one.
  EXPECT_LT(fs::file_size(bf16 + "/model.safetensors"), 0.6 * fs::file_size(fp32 + "/model.safetensors"));
}

TEST_F(EvalTest, ADamagedExportOrAnOccupiedOutIsRefused) {
  const std::string out = tmp_.str() + "/export";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run() + " --out " + out).code, 0);
  const std::string file = out + "/model.safetensors";
  const std::string intact = testing::ReadAll(file);
  // One flipped byte in a tensor's data, then a truncated file: each named.
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) - 7));
    const char flipped = static_cast<char>(intact[intact.size() - 7] ^ 0x10);
    f.write(&flipped, 1);
  }
  for (const std::string& command : {"sample --model " + out + " --prompt 'a bag' --out " + tmp_.str() + "/x.png",
                                     "export " + out + " --out " + tmp_.str() + "/again"}) {
    const testing::Result r = testing::Run(kLoom + " " + command);
    EXPECT_NE(r.code, 0) << command;
    EXPECT_NE(r.err.find(file + ": tensor '"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("fails its checksum"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(tmp_.str() + "/x.png"));
  EXPECT_FALSE(fs::exists(tmp_.str() + "/again"));
  fs::resize_file(file, fs::file_size(file) - 100);
  const testing::Result r = testing::Run(kLoom + " sample --model " + out + " --prompt 'a bag' --out " + tmp_.str() + "/x.png");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp_.str() + "/x.png"));
  // An --out that holds something else is left alone.
  const std::string occupied = tmp_.str() + "/occupied";
  fs::create_directories(occupied);
  std::ofstream(occupied + "/notes.txt") << "mine";
  const testing::Result o = testing::Run(kLoom + " export " + Run() + " --out " + occupied);
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("is not an export"), std::string::npos) << o.err;
  EXPECT_EQ(testing::ReadAll(occupied + "/notes.txt"), "mine");
  EXPECT_FALSE(fs::exists(occupied + "/model.safetensors"));
}

TEST_F(EvalTest, AReExportIsReplacedWholeOrNotAtAll) {
  const std::string out = tmp_.str() + "/export";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run() + "/checkpoints/step-0000010 --out " + out).code, 0);
  const nlohmann::json before = nlohmann::json::parse(testing::ReadAll(out + "/config.json"));
  // A crash after the new export is written, before it is swapped in: the old one stays
  // whole (weights and description together) and loads.
  const testing::Result crash = testing::Run("LOOM_FAULT_EXPORT=1 " + kLoom + " export " + Run() + " --out " + out);
  EXPECT_EQ(crash.code, 86) << crash.err;
  EXPECT_EQ(nlohmann::json::parse(testing::ReadAll(out + "/config.json"))["hash"], before["hash"]);
  EXPECT_EQ(testing::Run(kLoom + " sample --model " + out + " --prompt 'a bag' --n 1 --steps 2 --out " + tmp_.str() +
                         "/a.png").code, 0);
  // Without the crash the new weights replace the old at once.
  ASSERT_EQ(testing::Run(kLoom + " export " + Run() + " --out " + out).code, 0);
  const nlohmann::json after = nlohmann::json::parse(testing::ReadAll(out + "/config.json"));
  EXPECT_EQ(after["step"], 20);
  EXPECT_NE(after["hash"], before["hash"]);
  for (const auto& e : fs::directory_iterator(tmp_.str())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace loom

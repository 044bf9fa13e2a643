// The loom binary as a user meets it: exit codes, one clear line on stderr for bad
// input, nothing written by a failing command, help everywhere, info's JSON line.
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

// Runs loom in a fresh directory and checks that a failing command wrote nothing there.
testing::Result RunLoom(const std::string& args, bool expect_nothing_written = true) {
  testing::TempDir dir;
  testing::Result r = testing::Run(kLoom + " " + args, dir.str());
  if (expect_nothing_written) {
    EXPECT_TRUE(fs::is_empty(dir.path())) << "'loom " << args << "' wrote into its directory";
  }
  return r;
}

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

void ExpectBadInput(const std::string& args, const std::string& fragment) {
  const testing::Result r = RunLoom(args);
  EXPECT_EQ(r.code, 2) << "loom " << args << "\n" << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << "expected one line on stderr, got:\n" << r.err;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Cli, BadInputIsOneLineAndExitTwo) {
  ExpectBadInput("trian", "unknown command 'trian' (did you mean 'train'?)");
  ExpectBadInput("data shaps", "unknown command 'loom data shaps' (did you mean 'shapes'?)");
  ExpectBadInput("data", "'loom data' needs a command");
  ExpectBadInput("info --verbose", "unknown flag '--verbose'");
  ExpectBadInput("train", "missing CONFIG");
  ExpectBadInput("train /nonexistent/x.yaml", "cannot read config '/nonexistent/x.yaml'");
  ExpectBadInput("train " + kConfig + " bogus.key=1", "unknown key 'bogus.key'");
  ExpectBadInput("train " + kConfig + " optim.lr=fast",
                 "override 'optim.lr=fast': optim.lr: expected a finite number, got 'fast'");
  ExpectBadInput("train " + kConfig + " --print-confg", "did you mean '--print-config'?");
  ExpectBadInput("train " + kConfig + " dist.strategy=zero4", "did you mean 'zero1'?");
}

TEST(Cli, MalformedAndMistypedFilesNameFileAndLine) {
  testing::TempDir dir;
  const std::string bad = dir.str() + "/bad.yaml";
  std::ofstream(bad) << "run: {name: x}\noptim:\n  lr: [1\n";
  ExpectBadInput("train " + bad, bad + ":");
  ExpectBadInput("train " + bad, "malformed YAML");
  std::ofstream(bad, std::ios::trunc) << "run: {name: x}\ntrain:\n  steps: many\n";
  ExpectBadInput("train " + bad, bad + ":3:10: train.steps: expected an integer, got 'many'");
  std::ofstream(bad, std::ios::trunc) << "optim:\n  lrate: 1\n";
  ExpectBadInput("train " + bad, bad + ":2:3: unknown key 'optim.lrate' (did you mean 'optim.lr'?)");
}

TEST(Cli, PendingCommandsSaySoAndExitTwo) {
  ExpectBadInput("bench checkpoint", "not built yet");
}

TEST(Cli, ModelCommandsNameAMissingModel) {
  ExpectBadInput("sample --model /nonexistent --prompt y --out z.png", "/nonexistent: no such directory");
  ExpectBadInput("export /nonexistent --out y", "/nonexistent: no such directory");
  ExpectBadInput("export /nonexistent --out y --dtype fp8", "--dtype must be fp32, bf16 or fp16");
  ExpectBadInput("eval prompts --model /nonexistent --judge /nowhere", "/nowhere is not a judge");
  ExpectBadInput("eval classifier --data /nonexistent --out y", "/nonexistent/train");
  ExpectBadInput("eval reconstruction --model /nonexistent --data /nowhere", "/nonexistent: no such directory");
  ExpectBadInput("data encode --data /nonexistent --with /x --out y", "/nonexistent/manifest.json: no manifest");
  ExpectBadInput("import text-encoder --from /nonexistent --out y", "--from /nonexistent: no such directory");
  ExpectBadInput("import text-encoder --from . --out y", "--from . has no config.json");
}

TEST(Cli, HelpEverywhere) {
  for (const std::string args : {"--help", "info --help", "train --help", "data --help",
                                 "data shapes --help", "data encode --help", "eval --help", "eval prompts --help",
                                 "eval reconstruction --help", "export --help", "import text-encoder --help", "bench comm --help", "bench step --help",
                                 "bench checkpoint --help"}) {
    const testing::Result r = RunLoom(args);
    EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
    EXPECT_NE(r.out.find("usage: loom"), std::string::npos) << args << "\n" << r.out;
  }
  EXPECT_EQ(RunLoom("").code, 2);
}

TEST(Cli, PrintConfigRoundTripsThroughAFile) {
  const testing::Result first = RunLoom("train " + kConfig + " optim.lr=2e-4 --print-config");
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_NE(first.out.find("lr: 0.0002"), std::string::npos) << first.out;
  testing::TempDir dir;
  const std::string resolved = dir.str() + "/resolved.yaml";
  std::ofstream(resolved) << first.out;
  const testing::Result second = RunLoom("train " + resolved + " --print-config");
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_EQ(second.out, first.out);
}

TEST(Cli, KeysListsDocumentedKeysAndEachKindsOwn) {
  const testing::Result r = RunLoom("train --keys");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("dist.strategy"), std::string::npos);
  EXPECT_NE(r.out.find("stage.kind"), std::string::npos);
  EXPECT_NE(r.out.find("'dit', 'vae'"), std::string::npos);
  EXPECT_EQ(r.out.find("stage.model.text.width"), std::string::npos) << "a kind's keys without --kind";
  const testing::Result dit = RunLoom("train --keys --kind dit");
  ASSERT_EQ(dit.code, 0) << dit.err;
  EXPECT_NE(dit.out.find("stage.model.text.width"), std::string::npos);
  EXPECT_EQ(dit.out.find("stage.disc.start"), std::string::npos);
  const testing::Result vae = RunLoom("train --keys --kind vae");
  ASSERT_EQ(vae.code, 0) << vae.err;
  EXPECT_NE(vae.out.find("stage.disc.start"), std::string::npos);
  ExpectBadInput("train --keys --kind unet", "'unet' is not a stage kind; one of 'dit', 'vae'");
}

// The data commands end to end on real Fashion-MNIST (the first 300 of each split).
TEST(Cli, DataIngestInspectTokenizeAndBench) {
  testing::TempDir dir;
  const std::string out = dir.str() + "/fashion";
  testing::Result r = testing::Run(kLoom + " data fashion-mnist --out " + out + " --limit 300");
  ASSERT_EQ(r.code, 0) << r.err;
  r = testing::Run(kLoom + " data inspect " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json report = nlohmann::json::parse(r.out.substr(r.out.rfind('{')));
  EXPECT_EQ(report["samples"], 600);
  EXPECT_EQ(report["datasets"], 2);
  // Writing into a finished dataset is refused, and changes nothing.
  r = testing::Run(kLoom + " data fashion-mnist --out " + out + " --limit 10");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("already holds a dataset"), std::string::npos) << r.err;
  r = testing::Run(kLoom + " data tokenizer --data " + out + "/train --vocab 64");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/train/tokenizer.model"));
  r = testing::Run(kLoom + " bench loader --data " + out + "/train --samples 256 --batch 64 --repeats 1");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json bench = nlohmann::json::parse(r.out.substr(r.out.rfind('{', r.out.rfind("\"data\""))));
  for (const char* key : {"loader_samples_per_s", "bare_hdf5_samples_per_s", "sequential_mb_per_s",
                          "ratio_loader_vs_bare_hdf5", "workers_sweep"}) {
    EXPECT_TRUE(bench.contains(key)) << key;
  }
  // Synthetic shapes, images and video, pass inspection too.
  r = testing::Run(kLoom + " data shapes --out " + dir.str() + "/shapes --count 40 --size 16");
  ASSERT_EQ(r.code, 0) << r.err;
  r = testing::Run(kLoom + " data shapes --out " + dir.str() + "/clips --count 8 --size 16 --frames 4");
  ASSERT_EQ(r.code, 0) << r.err;
  r = testing::Run(kLoom + " data inspect " + dir.str() + "/clips");
  ASSERT_EQ(r.code, 0) << r.err;
  // A damaged copy fails inspection, naming the file.
  fs::resize_file(out + "/test/test-00000.h5", 1000);
  r = testing::Run(kLoom + " data inspect " + out);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find(out + "/test/test-00000.h5"), std::string::npos) << r.err;
}

TEST(Cli, BenchStepReportsThroughputBesideMatmulPeak) {
  testing::TempDir dir;
  ASSERT_EQ(testing::Run(kLoom + " data fashion-mnist --out " + dir.str() + "/fm --limit 64").code, 0);
  ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + dir.str() + "/fm/train --vocab 64").code, 0);
  const testing::Result r = RunLoom("bench step --config " + kConfig + " --steps 2 data.train=" + dir.str() + "/fm/train", false);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.rfind("{\"config\"")));
  for (const char* key : {"samples_per_s", "achieved_gflops", "matmul_gflops", "share_of_matmul_peak"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_GT(j["model_flops_per_step"].get<double>(), 0.0);
}

TEST(Cli, InfoEndsWithAJsonLine) {
  const testing::Result r = RunLoom("info");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  const nlohmann::json j = nlohmann::json::parse(last);
  EXPECT_EQ(j["rank"], 0);
  EXPECT_EQ(j["world"], 1);
  for (const char* key : {"libtorch", "cuda_available", "cuda_devices", "nccl_compiled",
                          "nccl_version", "mpi", "hdf5", "threads"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_FALSE(j["libtorch"].get<std::string>().empty());
  EXPECT_NE(j["mpi"].get<std::string>().find("MPI"), std::string::npos);
}

}  // namespace
}  // namespace loom

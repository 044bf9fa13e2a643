// Stages end to end, driving the binary on real Fashion-MNIST shards (the first 512 per
// split): the KL-VAE trains the same at 1 and 2 ranks and under zero2/zero3, resumes
// bitwise with its discriminator (a second trainable, with batch-norm buffers in the
// checkpoint); its export carries the latent scale; `loom data encode` caches its
// latents with their producer; a DiT trains on them with the VAE frozen (in no
// checkpoint), and its pipeline export samples; a latent U-Net (ldm) trains on the
// cached features of a frozen pretrained text encoder beside the latents, and exports
// as a three-part pipeline; an Imagen cascade (an 8x8 base and two super-resolution
// stages, one trained on crops) trains stage by stage, agrees at 1 and 2 ranks, chains
// into one export that samples from a prompt, and its super-resolution stage is
// evaluated against bicubic; CLIP, whose loss gathers features over ranks, trains the
// same at 1 and 2 ranks and under zero3, and its export classifies zero-shot; a
// diffusion prior trains on the embeddings its export caches and is evaluated, and
// refuses a cache of another CLIP; an unCLIP decoder trains on the same cache and exports
// with the prior as the text-to-image pipeline, which samples from a prompt and makes
// variations of an image; every misuse is one clear line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/support/pretrained.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

const std::string kLoom = LOOM_BINARY;
const std::string kPython = LOOM_PYTHON;
const std::string kVae = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-vae.yaml";
const std::string kDit = std::string(LOOM_SOURCE_DIR) + "/configs/tiny.yaml";
const std::string kLdm = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-ldm.yaml";
const std::string kClip = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-clip.yaml";
const std::string kPrior = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-prior.yaml";
const std::string kUnclip = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-unclip.yaml";

std::vector<nlohmann::json> Rows(const std::string& metrics) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::vector<double> Losses(const std::string& run) {
  std::vector<double> out;
  for (const auto& row : Rows(run + "/metrics.jsonl")) out.push_back(row["loss"]);
  return out;
}

// Tensor names of a safetensors file, one per line, by Python's safetensors.
std::string Keys(const std::string& file) {
  const testing::Result r = testing::Run(kPython + " -c \"from safetensors import safe_open; f = safe_open('" + file +
                                         "', 'pt'); print('\\n'.join(f.keys()))\"");
  EXPECT_EQ(r.code, 0) << r.err;
  return r.out;
}

class StagesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new testing::TempDir();
    const std::string out = data_->str() + "/fm";
    ASSERT_EQ(testing::Run(kLoom + " data fashion-mnist --out " + out + " --limit 512").code, 0);
    ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + out + "/train --vocab 64").code, 0);
  }
  static void TearDownTestSuite() { delete data_; }

  static std::string Data() { return data_->str() + "/fm"; }

  // Trains `config` on `np` ranks (one process without mpirun) into runs/NAME of this
  // test; returns the result.
  testing::Result Train(const std::string& config, int np, const std::string& name, const std::string& extra,
                        const std::string& env = "") {
    const std::string launcher = np == 1 ? "" : std::string(LOOM_MPIRUN) + " -np " + std::to_string(np) + " ";
    return testing::Run(env + launcher + kLoom + " train " + config + " data.train=" + Data() + "/train data.test=" +
                        Data() + "/test run.dir=" + Runs() + " run.name=" + name + " train.log_every=1 " + extra);
  }
  std::string Runs() const { return dir_.str() + "/runs"; }
  std::string Run(const std::string& name) const { return Runs() + "/" + name; }

  // A trained tiny VAE (`steps` steps), exported to DIR/exports/NAME.
  std::string VaeExport(const std::string& name, int steps) {
    const testing::Result t = Train(kVae, 1, name, "train.steps=" + std::to_string(steps));
    EXPECT_EQ(t.code, 0) << t.err;
    const std::string out = dir_.str() + "/exports/" + name;
    const testing::Result e = testing::Run(kLoom + " export " + Run(name) + " --out " + out);
    EXPECT_EQ(e.code, 0) << e.err;
    return out;
  }

  // Two images of one prompt from `model` (a run or an export) into `png`; its bytes.
  std::string Sample(const std::string& model, const std::string& png) {
    const testing::Result s = testing::Run(kLoom + " sample --model " + model +
                                           " --prompt 'a photo of a bag' --n 2 --steps 4 --out " + png);
    EXPECT_EQ(s.code, 0) << s.err;
    return testing::ReadAll(png);
  }

  static testing::TempDir* data_;
  testing::TempDir dir_;
};
testing::TempDir* StagesTest::data_ = nullptr;

TEST_F(StagesTest, TheVaeAgreesAtOneAndTwoRanksAndUnderZero) {
  ASSERT_EQ(Train(kVae, 1, "one", "train.steps=10").code, 0);
  const std::vector<double> one = Losses(Run("one"));
  ASSERT_EQ(one.size(), 10u);
  EXPECT_LT(one.back(), one.front());
  for (const char* strategy : {"ddp", "zero2", "zero3"}) {
    const testing::Result r = Train(kVae, 2, strategy, std::string("train.steps=10 dist.strategy=") + strategy);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<double> two = Losses(Run(strategy));
    ASSERT_EQ(two.size(), one.size()) << strategy;
    for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-4 * std::abs(one[i])) << strategy << " " << i;
  }
  // The figures of the loss are logged beside it.
  const nlohmann::json last = Rows(Run("one") + "/metrics.jsonl").back();
  EXPECT_TRUE(last.contains("rec") && last.contains("kl")) << last;
}

TEST_F(StagesTest, TheVaeWithItsDiscriminatorResumesBitwise) {
  const std::string disc = "stage.disc.enabled=true stage.disc.start=3 train.checkpoint_every=4 ";
  ASSERT_EQ(Train(kVae, 2, "straight", disc + "train.steps=8").code, 0);
  ASSERT_EQ(Train(kVae, 2, "resumed", disc + "train.steps=4").code, 0);
  const testing::Result r = Train(kVae, 2, "resumed", disc + "train.steps=8");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(testing::ReadAll(Run("straight") + "/model.safetensors") ==
              testing::ReadAll(Run("resumed") + "/model.safetensors"))
      << "the resumed two-trainable run differs from the straight one";
  // The discriminator trains from step 4 (start 3, counted from 0), with its own loss.
  const std::vector<nlohmann::json> rows = Rows(Run("straight") + "/metrics.jsonl");
  EXPECT_FALSE(rows[2].contains("disc.loss")) << rows[2];
  EXPECT_TRUE(rows[3].contains("disc.loss") && rows[3].contains("g_loss")) << rows[3];
  // Its batch-norm statistics are in the checkpoint and the final weights.
  if (kPython.empty()) GTEST_SKIP() << "no Python venv configured";
  const std::string keys = Keys(Run("straight") + "/checkpoints/step-0000008/rank-00000.safetensors");
  EXPECT_NE(keys.find("buffer/disc.main.3.running_mean"), std::string::npos) << keys;
  EXPECT_NE(keys.find("adam/disc.main.0.weight.exp_avg"), std::string::npos) << keys;
  EXPECT_NE(Keys(Run("straight") + "/model.safetensors").find("disc.main.3.running_var"), std::string::npos);
}

TEST_F(StagesTest, ALatentDiTTrainsOnCachedLatentsOfAFrozenVae) {
  const std::string vae = VaeExport("vae", 10);
  const nlohmann::json info = nlohmann::json::parse(testing::ReadAll(vae + "/config.json"));
  EXPECT_EQ(info["kind"], "vae");
  EXPECT_GT(info["calibration"]["latent_scale"].get<double>(), 0.0) << info;
  // Its reconstructions, judged: the last line is JSON with the figures.
  testing::Result e = testing::Run(kLoom + " eval reconstruction --model " + vae + " --data " + Data() +
                                   "/test --limit 64");
  ASSERT_EQ(e.code, 0) << e.err;
  const nlohmann::json figures = nlohmann::json::parse(e.out.substr(e.out.rfind("\n{") + 1));
  EXPECT_EQ(figures["images"], 64);
  EXPECT_GT(figures["psnr"].get<double>(), 5.0) << figures;
  EXPECT_GT(figures["ssim"].get<double>(), 0.0) << figures;
  // The cache: latents (and flipped latents) beside the pixels, made by this export.
  const std::string cache = dir_.str() + "/latents";
  testing::Result r = testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + vae + " --out " + cache +
                                   " --flip");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(testing::Run(kLoom + " data inspect " + cache).code, 0);
  const nlohmann::json manifest = nlohmann::json::parse(testing::ReadAll(cache + "/manifest.json"));
  EXPECT_EQ(manifest["version"], 2);
  EXPECT_EQ(manifest["caches"][0]["producer"]["hash"], info["hash"]);
  EXPECT_EQ(manifest["caches"][1]["producer"]["hash"], info["hash"]);
  EXPECT_EQ(manifest["caches"][0]["shape"], (std::vector<int>{8, 8, 8}));
  EXPECT_TRUE(fs::exists(cache + "/tokenizer.model"));

  // The DiT on latents: the same losses at 1 and 2 ranks; the VAE in no checkpoint.
  const std::string latent = "data.train=" + cache + " stage.vae=" + vae + " data.flip=true train.steps=6 ";
  ASSERT_EQ(Train(kDit, 1, "dit1", latent).code, 0);
  r = Train(kDit, 2, "dit2", latent);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<double> a = Losses(Run("dit1")), b = Losses(Run("dit2"));
  ASSERT_EQ(a.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 * std::abs(a[i])) << i;
  if (!kPython.empty()) {
    const std::string keys = Keys(Run("dit2") + "/checkpoints/step-0000006/rank-00000.safetensors");
    EXPECT_NE(keys.find("param/dit.final_linear.weight"), std::string::npos);
    EXPECT_EQ(keys.find("vae."), std::string::npos) << "a frozen parameter was checkpointed";
  }

  // Its export is a pipeline (the VAE decoder and the DiT) that samples, as the run does.
  const std::string pipeline = dir_.str() + "/exports/latent-dit";
  r = testing::Run(kLoom + " export " + Run("dit2") + " --out " + pipeline);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json p = nlohmann::json::parse(testing::ReadAll(pipeline + "/config.json"));
  EXPECT_EQ(p["kind"], "pipeline");
  EXPECT_EQ(p["output"], "dit");
  ASSERT_EQ(p["parts"].size(), 2u);
  EXPECT_EQ(p["parts"][0]["kind"], "vae");
  const std::string from_pipeline = Sample(pipeline, dir_.str() + "/p.png");
  EXPECT_FALSE(from_pipeline.empty());
  EXPECT_TRUE(Sample(Run("dit2"), dir_.str() + "/r.png") == from_pipeline);
  // The pipeline can move: its parts point at each other, not at where they came from.
  fs::rename(pipeline, dir_.str() + "/moved");
  fs::rename(vae, dir_.str() + "/vae-gone");
  EXPECT_TRUE(Sample(dir_.str() + "/moved", dir_.str() + "/m.png") == from_pipeline);
  fs::rename(dir_.str() + "/vae-gone", vae);
}

TEST_F(StagesTest, AnLdmTrainsOnCachedFeaturesOfAFrozenPretrainedTextEncoder) {
  const std::string minilm = testing::MiniLmDir(kPython);
  ASSERT_FALSE(minilm.empty()) << testing::kNoMiniLm;
  const std::string vae = VaeExport("vae", 6);
  const std::string latents = dir_.str() + "/latents", text = dir_.str() + "/text";
  const std::string encoder = dir_.str() + "/exports/minilm", other = dir_.str() + "/exports/minilm6";
  testing::Result r = testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + vae + " --out " + latents);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& [out, tokens] : {std::pair{encoder, 8}, std::pair{other, 6}}) {
    r = testing::Run(kLoom + " import text-encoder --from " + minilm + " --out " + out + " --max-tokens " +
                     std::to_string(tokens));
    ASSERT_EQ(r.code, 0) << r.err;
  }
  // The captions' features [8, 384] and mask [8] beside the latents, each with its producer.
  r = testing::Run(kLoom + " data encode --data " + latents + " --with " + encoder + " --out " + text);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json manifest = nlohmann::json::parse(testing::ReadAll(text + "/manifest.json"));
  ASSERT_EQ(manifest["caches"].size(), 3u) << manifest;
  EXPECT_EQ(manifest["caches"][1]["name"], "text");
  EXPECT_EQ(manifest["caches"][1]["shape"], (std::vector<int>{8, 384}));
  EXPECT_EQ(manifest["caches"][1]["producer"]["kind"], "bert");

  // The same losses at 1 and 2 ranks, and with the U-Net's blocks sharded by ZeRO-3.
  const std::string ldm = "data.train=" + text + " stage.vae=" + vae + " stage.text_encoder=" + encoder +
                          " train.steps=4 ";
  ASSERT_EQ(Train(kLdm, 1, "ldm1", ldm).code, 0);
  const std::vector<double> one = Losses(Run("ldm1"));
  ASSERT_EQ(one.size(), 4u);
  for (const char* strategy : {"ddp", "zero3"}) {
    r = Train(kLdm, 2, std::string("ldm-") + strategy, ldm + "dist.strategy=" + strategy);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<double> two = Losses(Run(std::string("ldm-") + strategy));
    ASSERT_EQ(two.size(), one.size()) << strategy;
    for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-4 * std::abs(one[i])) << strategy << i;
  }
  // Only the U-Net is trained and checkpointed: the encoder and the VAE are frozen parts.
  if (!kPython.empty()) {
    const std::string keys = Keys(Run("ldm-ddp") + "/checkpoints/step-0000004/rank-00000.safetensors");
    EXPECT_NE(keys.find("param/unet.conv_out.weight"), std::string::npos) << keys;
    EXPECT_EQ(keys.find("bert."), std::string::npos) << "a frozen parameter was checkpointed";
    EXPECT_EQ(keys.find("param/text."), std::string::npos) << "a frozen parameter was checkpointed";
  }

  // The export is a pipeline of three parts that encodes the prompt itself, and samples
  // as the run does.
  const std::string pipeline = dir_.str() + "/exports/sd";
  r = testing::Run(kLoom + " export " + Run("ldm-ddp") + " --out " + pipeline);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json p = nlohmann::json::parse(testing::ReadAll(pipeline + "/config.json"));
  EXPECT_EQ(p["output"], "ldm");
  ASSERT_EQ(p["parts"].size(), 3u) << p;
  EXPECT_EQ(p["parts"][0]["name"], "text_encoder");
  EXPECT_EQ(p["parts"][1]["name"], "vae");
  const std::string from_pipeline = Sample(pipeline, dir_.str() + "/p.png");
  EXPECT_FALSE(from_pipeline.empty());
  EXPECT_TRUE(Sample(Run("ldm-ddp"), dir_.str() + "/r.png") == from_pipeline);

  // Without a frozen encoder it trains its own over the caption tokens, on the same latents.
  r = Train(kLdm, 1, "own", "data.train=" + latents + " stage.vae=" + vae + " train.steps=2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(Keys(Run("own") + "/model.safetensors").find("text.token_embedding.weight"), std::string::npos);

  // Misuse: features of another encoder, a VAE where a text encoder belongs, a dataset
  // without the text cache, conditioning the ldm does not take. Nothing is written.
  const auto fails = [&](const testing::Result& f, const std::string& fragment) {
    EXPECT_EQ(f.code, 2) << f.err;
    EXPECT_NE(f.err.find(fragment), std::string::npos) << f.err;
    EXPECT_EQ(std::count(f.err.begin(), f.err.end(), '\n'), 1) << f.err;
  };
  const std::string base = "stage.vae=" + vae + " data.train=";
  fails(Train(kLdm, 1, "x", base + text + " stage.text_encoder=" + other), "'text' was encoded by " + encoder);
  fails(Train(kLdm, 1, "x", base + text + " stage.text_encoder=" + vae), "is a 'vae' model, which does not encode text");
  fails(Train(kLdm, 1, "x", base + latents + " stage.text_encoder=" + encoder), "has no 'text'");
  fails(Train(kLdm, 1, "x", base + text + " stage.text_encoder=" + encoder + " stage.model.embed_dim=8"),
        "sets its own conditioning inputs");
  EXPECT_FALSE(fs::exists(Run("x")));
}

TEST_F(StagesTest, AnImagenCascadeTrainsStageByStageAndSamplesFromAPrompt) {
  const std::string minilm = testing::MiniLmDir(kPython);
  ASSERT_FALSE(minilm.empty()) << testing::kNoMiniLm;
  const std::string encoder = dir_.str() + "/exports/minilm", text = dir_.str() + "/text";
  testing::Result r = testing::Run(kLoom + " import text-encoder --from " + minilm + " --out " + encoder +
                                   " --max-tokens 8");
  ASSERT_EQ(r.code, 0) << r.err;
  r = testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + encoder + " --out " + text);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string common = "data.train=" + text + " data.fit=resize stage.text_encoder=" + encoder +
                             " stage.pooled_text=true stage.thresholding=dynamic train.steps=3 ";
  const std::string base = common + "data.image_size=8";
  const std::string sr16 = common + "data.image_size=16 stage.low_res=8";
  const std::string sr32 = common + "data.image_size=32 stage.low_res=16 stage.crop=16";
  ASSERT_EQ(Train(kLdm, 1, "base", base).code, 0);
  ASSERT_EQ(Train(kLdm, 1, "sr16", sr16).code, 0);
  // Crops, augmentation levels and their noise are drawn per sample: 2 ranks agree with 1.
  ASSERT_EQ(Train(kLdm, 1, "sr32", sr32).code, 0);
  r = Train(kLdm, 2, "sr32-two", sr32);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<double> one = Losses(Run("sr32")), two = Losses(Run("sr32-two"));
  ASSERT_EQ(one.size(), 3u);
  ASSERT_EQ(two.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-4 * std::abs(one[i])) << i;
  std::map<std::string, std::string> exports;
  for (const char* name : {"base", "sr16", "sr32"}) {
    exports[name] = dir_.str() + "/exports/" + name;
    r = testing::Run(kLoom + " export " + Run(name) + " --out " + exports[name]);
    ASSERT_EQ(r.code, 0) << r.err;
  }

  // The cascade: one text encoder shared by three stages; it samples 32x32 images from a
  // prompt, the same for the same seed, with per-stage settings.
  const std::string cascade = dir_.str() + "/exports/cascade";
  const std::string chain = kLoom + " export cascade --stage " + exports["base"] + " --stage " + exports["sr16"] +
                            " --stage ";
  r = testing::Run(chain + exports["sr32"] + " --out " + cascade + " --steps 3,2,2 --cfg 3,1,1");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json c = nlohmann::json::parse(testing::ReadAll(cascade + "/config.json"));
  EXPECT_EQ(c["kind"], "cascade");
  ASSERT_EQ(c["stages"].size(), 3u) << c;
  EXPECT_EQ(c["stages"][0]["steps"], 3);
  ASSERT_EQ(c["parts"].size(), 1u) << c;
  EXPECT_EQ(c["parts"][0]["name"], "text_encoder");
  const std::string png = dir_.str() + "/c.png";
  const auto sample = [&](const std::string& flags) {
    return testing::Run(kLoom + " sample --model " + cascade + " --prompt 'a photo of a bag' --n 2 --out " + png + " " +
                        flags);
  };
  r = sample("--steps 2 --aug 0.2");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json line = nlohmann::json::parse(testing::LastLine(r.out));
  EXPECT_EQ(line["steps"], (std::vector<int>{2, 2, 2}));
  EXPECT_EQ(line["cfg"], (std::vector<double>{3, 1, 1}));
  const std::string first = testing::ReadAll(png);
  ASSERT_EQ(sample("--steps 2 --aug 0.2").code, 0);
  EXPECT_EQ(testing::ReadAll(png), first);
  // Its grid is as much wider and taller than the base's as 32x32 images are than 8x8
  // (the PNG header's width and height).
  const auto size = [](const std::string& file) {
    EXPECT_GT(file.size(), 24u);
    const auto be32 = [&](size_t at) {
      uint32_t v = 0;
      for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(file[at + i]);
      return v;
    };
    return std::pair{be32(16), be32(20)};
  };
  const auto [width, height] = size(first);
  const auto [base_width, base_height] = size(Sample(exports["base"], dir_.str() + "/b.png"));
  EXPECT_EQ(height - base_height, 24u);
  EXPECT_EQ(width - base_width, 48u);

  // The 8 -> 16 stage against bicubic on held-out images.
  r = testing::Run(kLoom + " eval super-resolution --model " + exports["sr16"] + " --data " + Data() +
                   "/test --limit 8 --samples 2 --steps 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json sr = nlohmann::json::parse(testing::LastLine(r.out));
  EXPECT_EQ(sr["images"], 8);
  EXPECT_EQ(sr["low_res"], 8);
  for (const char* key : {"psnr", "psnr_mean_of_samples", "psnr_bicubic", "ssim_bicubic", "consistency_psnr"}) {
    EXPECT_TRUE(sr[key].is_number() && sr[key].get<double>() > 0) << key << sr;
  }

  // Misuse, each one clear line, nothing written: stages that do not follow on, stages
  // under different text encoders, an augmentation level outside [0, 1], a stage used
  // for what it does not do, a low_res that does not divide the side.
  const auto fails = [&](const testing::Result& f, const std::string& fragment) {
    EXPECT_EQ(f.code, 2) << f.err;
    EXPECT_NE(f.err.find(fragment), std::string::npos) << f.err;
    EXPECT_EQ(std::count(f.err.begin(), f.err.end(), '\n'), 1) << f.err;
  };
  const std::string bad = dir_.str() + "/exports/bad";
  fails(testing::Run(kLoom + " export cascade --stage " + exports["base"] + " --stage " + exports["sr32"] + " --out " + bad),
        "upsamples 16x16 images with 1 channel(s), but " + exports["base"] + " makes 8x8");
  ASSERT_EQ(Train(kLdm, 1, "own", "data.train=" + text + " data.fit=resize data.image_size=16 stage.low_res=8 "
                                  "train.steps=1").code, 0);
  fails(testing::Run(kLoom + " export cascade --stage " + exports["base"] + " --stage " + Run("own") + " --out " + bad),
        "used different text encoders");
  EXPECT_FALSE(fs::exists(bad));
  fails(Train(kLdm, 1, "x", sr16 + " stage.aug_level=1.5"), "aug_level");
  fails(sample("--aug 2"), "--aug must be in [0, 1]");
  fails(sample("--steps 2,2"), "3 stages but 2 values of steps");
  fails(testing::Run(kLoom + " sample --model " + exports["sr16"] + " --prompt 'a bag' --out " + png),
        "does not make images from text");
  fails(testing::Run(kLoom + " eval super-resolution --model " + exports["base"] + " --data " + Data() + "/test"),
        "does not upsample");
  fails(Train(kLdm, 1, "x", common + "data.image_size=16 stage.low_res=5"), "must divide data.image_size 16");
  EXPECT_FALSE(fs::exists(Run("x")));
}

TEST_F(StagesTest, ClipTrainsAlikeAtOneAndTwoRanksAndClassifiesZeroShot) {
  ASSERT_EQ(Train(kClip, 1, "clip1", "").code, 0);
  const std::vector<double> one = Losses(Run("clip1"));
  ASSERT_EQ(one.size(), 20u);
  EXPECT_LT(one.back(), one.front());
  // The loss scores each rank's pairs against the whole global batch: the world size and
  // the strategy change nothing.
  for (const char* strategy : {"ddp", "zero3"}) {
    const testing::Result r = Train(kClip, 2, std::string("clip-") + strategy, std::string("dist.strategy=") + strategy);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<double> two = Losses(Run(std::string("clip-") + strategy));
    ASSERT_EQ(two.size(), one.size()) << strategy;
    for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-4 * std::abs(one[i])) << strategy << " " << i;
  }
  const nlohmann::json last = Rows(Run("clip1") + "/metrics.jsonl").back();
  EXPECT_TRUE(last.contains("acc") && last.contains("scale")) << last;
  EXPECT_LE(last["scale"].get<double>(), 100.0);

  const std::string clip = dir_.str() + "/exports/clip";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run("clip1") + " --out " + clip).code, 0);
  const testing::Result z =
      testing::Run(kLoom + " eval zero-shot --model " + clip + " --data " + Data() + "/test --limit 64");
  ASSERT_EQ(z.code, 0) << z.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(z.out + z.err), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << z.out << z.err;
  EXPECT_EQ(report["images"], 64);
  EXPECT_EQ(report["templates"].size(), 4u);
  EXPECT_EQ(report["per_class"].size(), 10u);
  EXPECT_GE(report["accuracy"].get<double>(), 0.0);
  EXPECT_LE(report["accuracy"].get<double>(), 1.0);
  EXPECT_GE(report["recall_at_5"].get<double>(), report["recall_at_1"].get<double>());
  EXPECT_GT(report["captions"].get<int>(), 5);

  // Misuse: a template without a class, a model that embeds nothing, one that makes no images.
  testing::Result bad = testing::Run(kLoom + " eval zero-shot --model " + clip + " --data " + Data() +
                                     "/test --template 'a photo'");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("names no class"), std::string::npos) << bad.err;
  bad = testing::Run(kLoom + " eval prompts --model " + clip + " --judge " + dir_.str() + " --per-class 1");
  EXPECT_NE(bad.code, 0);
  bad = Train(kClip, 1, "clip-bad", "stage.model.patch=5");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("does not divide data.image_size"), std::string::npos) << bad.err;
}

TEST_F(StagesTest, DalleTwoStagesTrainOnTheirClipsCacheAndChainIntoOnePipeline) {
  const auto clip_export = [&](const std::string& name, int seed) {
    const testing::Result t = Train(kClip, 1, name, "train.steps=10 run.seed=" + std::to_string(seed));
    EXPECT_EQ(t.code, 0) << t.err;
    const std::string out = dir_.str() + "/exports/" + name;
    EXPECT_EQ(testing::Run(kLoom + " export " + Run(name) + " --out " + out).code, 0);
    return out;
  };
  const std::string clip = clip_export("clip-a", 1), other = clip_export("clip-b", 2);
  const std::string cache = dir_.str() + "/fm-clip";
  const testing::Result e =
      testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + clip + " --out " + cache);
  ASSERT_EQ(e.code, 0) << e.err;
  // Train on the cache (the flags of Train() point data.train at the raw shards: override).
  const auto prior = [&](int np, const std::string& name, const std::string& with) {
    return Train(kPrior, np, name, "data.train=" + cache + " stage.clip=" + with);
  };
  ASSERT_EQ(prior(1, "prior1", clip).code, 0);
  const std::vector<double> one = Losses(Run("prior1"));
  ASSERT_EQ(one.size(), 20u);
  EXPECT_LT(one.back(), one.front());
  const testing::Result two = prior(2, "prior2", clip);
  ASSERT_EQ(two.code, 0) << two.err;
  const std::vector<double> losses = Losses(Run("prior2"));
  ASSERT_EQ(losses.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(losses[i], one[i], 1e-4 * std::abs(one[i])) << i;

  const std::string exported = dir_.str() + "/exports/prior";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run("prior1") + " --out " + exported).code, 0);
  const testing::Result ev = testing::Run(kLoom + " eval prior --model " + exported + " --data " + Data() +
                                          "/test --limit 32 --steps 4");
  ASSERT_EQ(ev.code, 0) << ev.err;
  const nlohmann::json report = nlohmann::json::parse(testing::LastLine(ev.out + ev.err), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << ev.out << ev.err;
  EXPECT_EQ(report["images"], 32);
  for (const char* key : {"cos_text_image", "cos_predicted_image", "cos_predicted_unrelated", "cos_same_class_images"}) {
    EXPECT_GE(report[key].get<double>(), -1.0) << key;
    EXPECT_LE(report[key].get<double>(), 1.0) << key;
  }
  EXPECT_GE(report["zero_shot_predicted"].get<double>(), 0.0);

  // A cache of another CLIP, a prior without its CLIP, a CLIP given to eval prior.
  testing::Result bad = prior(1, "prior-other", other);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("stage.clip"), std::string::npos) << bad.err;
  bad = Train(kPrior, 1, "prior-none", "data.train=" + cache + " 'stage.clip=\"\"'");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("stage.clip is empty"), std::string::npos) << bad.err;
  bad = testing::Run(kLoom + " eval prior --model " + clip + " --data " + Data() + "/test");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("not a diffusion prior"), std::string::npos) << bad.err;

  // The decoder, alike at 1 and 2 ranks; with the prior its export is the whole pipeline.
  const auto decoder = [&](int np, const std::string& name, const std::string& extra) {
    return Train(kUnclip, np, name, "data.train=" + cache + " stage.clip=" + clip + " " + extra);
  };
  ASSERT_EQ(decoder(1, "unclip1", "stage.prior=" + exported).code, 0);
  const testing::Result d2 = decoder(2, "unclip2", "stage.prior=" + exported);
  ASSERT_EQ(d2.code, 0) << d2.err;
  const std::vector<double> d_one = Losses(Run("unclip1")), d_two = Losses(Run("unclip2"));
  ASSERT_EQ(d_one.size(), 20u);
  ASSERT_EQ(d_two.size(), d_one.size());
  for (size_t i = 0; i < d_one.size(); ++i) EXPECT_NEAR(d_two[i], d_one[i], 1e-4 * std::abs(d_one[i])) << i;
  const std::string dalle2 = dir_.str() + "/exports/dalle2";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run("unclip1") + " --out " + dalle2).code, 0);
  const nlohmann::json info = nlohmann::json::parse(testing::ReadAll(dalle2 + "/config.json"));
  EXPECT_EQ(info["kind"], "pipeline");
  EXPECT_EQ(info["output"], "unclip");
  EXPECT_EQ(info["parts"].size(), 3u);
  const std::string png = dir_.str() + "/bag.png";
  EXPECT_FALSE(Sample(dalle2, png).empty());
  const testing::Result v = testing::Run(kLoom + " sample --model " + dalle2 + " --image " + png +
                                         " --n 2 --steps 4 --out " + dir_.str() + "/variations.png");
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_TRUE(fs::exists(dir_.str() + "/variations.png"));

  // A prior of another CLIP, a variation image that is not an image, variations of a model
  // that makes none, images from text without a prior.
  ASSERT_EQ(testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + other + " --out " +
                         dir_.str() + "/fm-clip-b").code, 0);
  ASSERT_EQ(Train(kPrior, 1, "prior-b", "data.train=" + dir_.str() + "/fm-clip-b stage.clip=" + other).code, 0);
  ASSERT_EQ(testing::Run(kLoom + " export " + Run("prior-b") + " --out " + dir_.str() + "/exports/prior-b").code, 0);
  bad = decoder(1, "unclip-bad", "stage.prior=" + dir_.str() + "/exports/prior-b");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("another CLIP model"), std::string::npos) << bad.err;
  const std::string not_image = dir_.str() + "/not-an-image.png";
  std::ofstream(not_image) << "text";
  bad = testing::Run(kLoom + " sample --model " + dalle2 + " --image " + not_image + " --out " + dir_.str() + "/x.png");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("--image " + not_image), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir_.str() + "/x.png"));
  bad = testing::Run(kLoom + " sample --model " + clip + " --image " + png + " --out " + dir_.str() + "/x.png");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("does not make variations"), std::string::npos) << bad.err;
  ASSERT_EQ(decoder(1, "unclip-alone", "").code, 0);
  bad = testing::Run(kLoom + " sample --model " + Run("unclip-alone") + " --prompt 'a bag' --out " + dir_.str() +
                     "/x.png");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("does not make images from text"), std::string::npos) << bad.err;
}

TEST_F(StagesTest, MisusedExportsCachesAndDependenciesAreOneClearLine) {
  const std::string vae = VaeExport("vae", 4), other = VaeExport("other", 5);
  const std::string cache = dir_.str() + "/latents";
  ASSERT_EQ(testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + vae + " --out " + cache).code, 0);
  const auto fails = [&](const testing::Result& r, const std::string& fragment) {
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  // A cache made by another VAE, flips that were not encoded, a VAE export used as a DiT,
  // a DiT export where a VAE is needed, no export at all: nothing is written.
  fails(Train(kDit, 1, "x", "data.train=" + cache + " stage.vae=" + other), "was encoded by " + vae);
  fails(Train(kDit, 1, "x", "data.train=" + cache + " stage.vae=" + vae + " data.flip=true"), "encoded without flips");
  fails(testing::Run(kLoom + " sample --model " + vae + " --prompt 'a bag' --out " + dir_.str() + "/x.png"),
        "does not make images from text");
  ASSERT_EQ(Train(kDit, 1, "pixel", "train.steps=2").code, 0);
  const std::string dit = dir_.str() + "/exports/pixel";
  ASSERT_EQ(testing::Run(kLoom + " export " + Run("pixel") + " --out " + dit).code, 0);
  fails(Train(kDit, 1, "x", "data.train=" + cache + " stage.vae=" + dit), "is a 'dit' export; this option needs a 'vae'");
  fails(Train(kDit, 1, "x", "data.train=" + cache + " stage.vae=" + Run("pixel")), "is not an export (no config.json)");
  fails(testing::Run(kLoom + " data encode --data " + Data() + "/train --with " + dit + " --out " + dir_.str() + "/c2"),
        "computes nothing to cache");
  fails(Train(kDit, 1, "x", "data.train=" + Data() + "/train stage.vae=" + vae), "has no 'latents'");
  EXPECT_FALSE(fs::exists(Run("x")));
  EXPECT_FALSE(fs::exists(dir_.str() + "/c2"));

  // A dependency changed since the run started: resuming is refused.
  ASSERT_EQ(Train(kDit, 1, "latent", "data.train=" + cache + " stage.vae=" + vae + " train.steps=2").code, 0);
  const testing::Result again = testing::Run(kLoom + " export " + Run("vae") + "/checkpoints/step-0000004 --out " + vae +
                                             " --weights raw");
  ASSERT_EQ(again.code, 0) << again.err;
  fails(Train(kDit, 1, "latent", "data.train=" + cache + " stage.vae=" + vae + " train.steps=4"), "has changed since the run started");
}

TEST_F(StagesTest, ZeroThreeWritesOneNthPerRankAndSurvivesASkippedLastStep) {
  // The bytes each rank writes at a checkpoint (from the log), at 1, 2 and 4 ranks.
  std::vector<double> most;
  std::set<int64_t> counted;  // the parameters the run's first line reports
  for (int np : {1, 2, 4}) {
    const std::string name = "z3-" + std::to_string(np);
    const testing::Result r = Train(kDit, np, name, "train.steps=2 dist.strategy=zero3");
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string log = testing::ReadAll(Run(name) + "/log.txt");
    const size_t at = log.rfind("bytes written per rank: ");
    ASSERT_NE(at, std::string::npos) << log;
    const size_t count_at = log.find(" stage, ");
    ASSERT_NE(count_at, std::string::npos) << log;
    counted.insert(std::stoll(log.substr(count_at + 8)));
    std::istringstream in(log.substr(at + 24));
    double largest = 0;
    for (std::string field; std::getline(in, field, ',');) largest = std::max(largest, std::stod(field));
    most.push_back(largest);
  }
  // Every parameter counted, whole, however the ranks shard them.
  ASSERT_EQ(counted.size(), 1u);
  EXPECT_GT(*counted.begin(), 0);
  // Rank 0 also writes the buffers: a little over 1/N.
  EXPECT_LT(most[1], 0.6 * most[0]) << most[0] << " " << most[1];
  EXPECT_LT(most[2], 0.35 * most[0]) << most[0] << " " << most[2];
  // A step skipped for a non-finite loss at the very end: the checkpoint, the preview
  // and the final weights still hold every parameter, finite.
  const testing::Result r = Train(kDit, 2, "z3-skip", "train.steps=4 dist.strategy=zero3 train.on_nan=skip "
                                  "train.sample_every=4", "LOOM_FAULT_NAN_LOSS=4:1 ");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(Run("z3-skip") + "/samples/step-0000004.png"));
  EXPECT_EQ(testing::Run(kLoom + " sample --model " + Run("z3-skip") + " --prompt 'a bag' --n 1 --steps 2 --out " +
                         dir_.str() + "/z.png").code, 0);
  if (kPython.empty()) return;
  const testing::Result check = testing::Run(
      kPython + " -c \"from safetensors.torch import load_file; import torch; d = load_file('" + Run("z3-skip") +
      "/model.safetensors'); print(all(t.numel() > 0 and bool(torch.isfinite(t).all()) for t in d.values()), "
      "tuple(d['dit.final_linear.weight'].shape))\"");
  ASSERT_EQ(check.code, 0) << check.err;
  EXPECT_NE(check.out.find("True (16, 32)"), std::string::npos) << check.out;
}

TEST_F(StagesTest, ADamagedCheckpointIsNamedAndPassedOver) {
  const std::string every3 = "train.checkpoint_every=3 ";
  ASSERT_EQ(Train(kDit, 1, "straight", every3 + "train.steps=9").code, 0);
  ASSERT_EQ(Train(kDit, 1, "damaged", every3 + "train.steps=6").code, 0);
  // One flipped byte in the data of the newest checkpoint's tensors.
  const std::string file = Run("damaged") + "/checkpoints/step-0000006/rank-00000.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(fs::file_size(file) / 2));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) / 2));
    f.write(&c, 1);
  }
  // loom sample refuses it, naming the file.
  const testing::Result s = testing::Run(kLoom + " sample --model " + Run("damaged") + "/checkpoints/step-0000006" +
                                         " --prompt 'a bag' --out " + dir_.str() + "/d.png");
  EXPECT_NE(s.code, 0);
  EXPECT_NE(s.err.find(file), std::string::npos) << s.err;
  // Training resumes from step 3, says so, and ends as the straight run does.
  const testing::Result r = Train(kDit, 1, "damaged", every3 + "train.steps=9");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("is damaged: " + file), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("resuming from the older intact checkpoint"), std::string::npos) << r.err;
  EXPECT_TRUE(testing::ReadAll(Run("straight") + "/model.safetensors") ==
              testing::ReadAll(Run("damaged") + "/model.safetensors"));
  // With every checkpoint damaged the run stops, naming the newest.
  for (const auto& e : fs::directory_iterator(Run("damaged") + "/checkpoints")) {
    fs::resize_file(e.path() / "rank-00000.safetensors", 100);
  }
  const testing::Result none = Train(kDit, 1, "damaged", every3 + "train.steps=12");
  EXPECT_NE(none.code, 0);
  EXPECT_NE(none.err.find("no intact checkpoint under " + Run("damaged") + "/checkpoints"), std::string::npos)
      << none.err;
}

}  // namespace
}  // namespace loom

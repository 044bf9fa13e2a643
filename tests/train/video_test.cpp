// Video stages end to end, driving the binary on real moving Fashion-MNIST clips (64 of 5
// frames on a 32x32 canvas, seen at 16x16): the causal video VAE trains the same at 1 and
// 2 ranks, with single-frame steps on the same steps everywhere; its export carries the
// per-channel latent shift and scale; `loom eval reconstruction` reports per-frame
// figures of it and of an image VAE on the same clips; `loom data encode` caches its
// latents of every clip; a text-to-video DiT trains on that cache the same at 1 and 2
// ranks, on a bucket of latent frame counts per step, resumes bitwise, and its pipeline
// export writes sampled clips as a GIF and a PNG strip and is judged (class per frame,
// direction by the centroid's track, the reader validated on real clips first); bad
// input is one clear line and writes nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/support/subprocess.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

const std::string kLoom = LOOM_BINARY;
const std::string kVideoVae = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-video-vae.yaml";
const std::string kVae = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-vae.yaml";
const std::string kVideoDit = std::string(LOOM_SOURCE_DIR) + "/configs/tiny-video-dit.yaml";

std::vector<nlohmann::json> Rows(const std::string& metrics) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

class VideoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new testing::TempDir();
    for (const char* split : {"train", "test"}) {
      const testing::Result r = testing::Run(kLoom + " data moving-fashion --out " + Clips() + "/" + split +
                                             " --count 64 --frames 5 --size 32 --split " + split +
                                             (std::string(split) == "test" ? " --seed 1" : ""));
      ASSERT_EQ(r.code, 0) << r.err;
    }
    ASSERT_EQ(testing::Run(kLoom + " data tokenizer --data " + Clips() + "/train --vocab 64").code, 0);
    ASSERT_EQ(testing::Run(kLoom + " data fashion-mnist --out " + data_->str() + "/fm --limit 64").code, 0);
  }
  static void TearDownTestSuite() { delete data_; }

  static std::string Clips() { return data_->str() + "/clips"; }
  static std::string Images() { return data_->str() + "/fm"; }

  testing::Result Train(const std::string& config, int np, const std::string& name, const std::string& extra) {
    const std::string launcher = np == 1 ? "" : std::string(LOOM_MPIRUN) + " -np " + std::to_string(np) + " ";
    return testing::Run(launcher + kLoom + " train " + config + " data.train=" + Clips() + "/train data.test=" +
                        Clips() + "/test run.dir=" + Runs() + " run.name=" + name + " train.log_every=1 " + extra);
  }
  std::string Runs() const { return dir_.str() + "/runs"; }
  std::string Run(const std::string& name) const { return Runs() + "/" + name; }
  std::string Export(const std::string& run) {
    const std::string out = dir_.str() + "/exports/" + run;
    const testing::Result e = testing::Run(kLoom + " export " + Run(run) + " --out " + out);
    EXPECT_EQ(e.code, 0) << e.err;
    return out;
  }

  static testing::TempDir* data_;
  testing::TempDir dir_;
};
testing::TempDir* VideoTest::data_ = nullptr;

TEST_F(VideoTest, TheVideoVaeAgreesAtOneAndTwoRanks) {
  ASSERT_EQ(Train(kVideoVae, 1, "one", "train.steps=8").code, 0);
  const testing::Result r = Train(kVideoVae, 2, "two", "train.steps=8");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<nlohmann::json> one = Rows(Run("one") + "/metrics.jsonl"), two = Rows(Run("two") + "/metrics.jsonl");
  ASSERT_EQ(one.size(), 8u);
  ASSERT_EQ(two.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    const double a = one[i]["loss"], b = two[i]["loss"];
    EXPECT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << i;
  }
  EXPECT_TRUE(one.back().contains("rec") && one.back().contains("kl")) << one.back();
}

TEST_F(VideoTest, ItsExportReconstructsClipsAndCachesTheirLatents) {
  ASSERT_EQ(Train(kVideoVae, 1, "vae", "train.steps=20 train.eval_every=20").code, 0);
  // The evaluation during training: per-frame figures, the first frame apart, flicker.
  const nlohmann::json last = Rows(Run("vae") + "/metrics.jsonl").back();
  for (const char* key : {"psnr", "first_psnr", "later_psnr", "ssim", "flicker", "flicker_real"}) {
    EXPECT_TRUE(last.contains(key)) << key << " " << last;
  }
  const std::string vae = Export("vae");
  const nlohmann::json config = nlohmann::json::parse(testing::ReadAll(vae + "/config.json"));
  const nlohmann::json& calibration = config["calibration"];
  ASSERT_EQ(calibration["latent_shift"].size(), 4u) << config.dump();
  ASSERT_EQ(calibration["latent_scale"].size(), 4u) << config.dump();
  for (const auto& s : calibration["latent_scale"]) EXPECT_GT(s.get<double>(), 0);

  const testing::Result eval =
      testing::Run(kLoom + " eval reconstruction --model " + vae + " --data " + Clips() + "/test --limit 16");
  ASSERT_EQ(eval.code, 0) << eval.err;
  const nlohmann::json e = nlohmann::json::parse(testing::LastLine(eval.out + eval.err));
  EXPECT_EQ(e["clips"], 16);
  EXPECT_EQ(e["frames"], 5);
  EXPECT_EQ(e["psnr_per_frame"].size(), 5u);
  EXPECT_GT(e["psnr"].get<double>(), 5.0);
  EXPECT_GT(e["flicker_real"].get<double>(), 0.0);  // the garment moves
  // An image VAE on the same clips: every frame reconstructed on its own, the same figures.
  ASSERT_EQ(testing::Run(kLoom + " train " + kVae + " data.train=" + Images() + "/train run.dir=" + Runs() +
                         " run.name=image train.steps=4")
                .code,
            0);
  const testing::Result image =
      testing::Run(kLoom + " eval reconstruction --model " + Export("image") + " --data " + Clips() + "/test --limit 16");
  ASSERT_EQ(image.code, 0) << image.err;
  const nlohmann::json i = nlohmann::json::parse(testing::LastLine(image.out + image.err));
  EXPECT_EQ(i["frames"], 5);
  EXPECT_EQ(i["kind"], "vae");

  // The cache: the posterior moments [2z, t, h, w] of every clip, made by this export.
  const std::string cache = dir_.str() + "/latents";
  const testing::Result enc =
      testing::Run(kLoom + " data encode --data " + Clips() + "/train --with " + vae + " --out " + cache);
  ASSERT_EQ(enc.code, 0) << enc.err;
  const nlohmann::json manifest = nlohmann::json::parse(testing::ReadAll(cache + "/manifest.json"));
  ASSERT_EQ(manifest["caches"].size(), 1u) << manifest.dump();
  EXPECT_EQ(manifest["caches"][0]["shape"], nlohmann::json({8, 3, 8, 8})) << manifest.dump();
}

TEST_F(VideoTest, AVideoDiTTrainsOnTheCacheAndSamplesClips) {
  ASSERT_EQ(Train(kVideoVae, 1, "vae", "train.steps=4").code, 0);
  const std::string vae = Export("vae"), cache = dir_.str() + "/latents";
  ASSERT_EQ(testing::Run(kLoom + " data encode --data " + Clips() + "/train --with " + vae + " --out " + cache).code, 0);
  const std::string dit = "data.train=" + cache + " stage.vae=" + vae + " ";
  const testing::Result one = Train(kVideoDit, 1, "one", dit + "train.steps=6");
  ASSERT_EQ(one.code, 0) << one.err;
  const testing::Result two = Train(kVideoDit, 2, "two", dit + "train.steps=6");
  ASSERT_EQ(two.code, 0) << two.err;
  const std::vector<nlohmann::json> a = Rows(Run("one") + "/metrics.jsonl"), b = Rows(Run("two") + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), a.size());
  std::set<int> buckets;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i]["loss"].get<double>(), a[i]["loss"].get<double>(), 1e-4 * std::abs(a[i]["loss"].get<double>()));
    EXPECT_EQ(b[i]["frames"], a[i]["frames"]) << "step " << i << ": the ranks took another bucket";
    buckets.insert(a[i]["frames"].get<int>());
  }
  EXPECT_GT(buckets.size(), 1u) << "six steps drew one bucket only";
  // Stopped at step 3 and resumed: the same weights as the straight run.
  ASSERT_EQ(Train(kVideoDit, 2, "resumed", dit + "train.steps=3").code, 0);
  ASSERT_EQ(Train(kVideoDit, 2, "resumed", dit + "train.steps=6").code, 0);
  EXPECT_TRUE(testing::ReadAll(Run("two") + "/model.safetensors") ==
              testing::ReadAll(Run("resumed") + "/model.safetensors"));
  // The export is the pipeline video VAE -> DiT; it samples clips of the trained length
  // or a shorter one, as a GIF and a strip.
  const std::string out = dir_.str() + "/clip.gif";
  const testing::Result s = testing::Run(kLoom + " sample --model " + Export("one") +
                                         " --prompt 'a sneaker moving right' --n 2 --steps 3 --out " + out);
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_EQ(testing::ReadAll(out).substr(0, 6), "GIF89a");
  EXPECT_EQ(testing::ReadAll(dir_.str() + "/clip.png").substr(1, 3), "PNG");
  const testing::Result shorter = testing::Run(kLoom + " sample --model " + Export("two") +
                                               " --prompt 'a bag moving up' --n 1 --steps 2 --frames 3 --out " +
                                               dir_.str() + "/short.png");
  ASSERT_EQ(shorter.code, 0) << shorter.err;
  const testing::Result too_long = testing::Run(kLoom + " sample --model " + Export("two") +
                                                " --prompt 'a bag' --frames 9 --out " + dir_.str() + "/long.gif");
  EXPECT_EQ(too_long.code, 2);
  EXPECT_NE(too_long.err.find("up to 5 frames"), std::string::npos) << too_long.err;
  // Judged: every frame by the image judge, the direction by the centroid's track; the
  // reader first on real clips, where it must be right nearly always.
  const std::string judge = dir_.str() + "/judge";
  ASSERT_EQ(testing::Run(kLoom + " eval classifier --data " + Images() + " --out " + judge +
                         " --image-size 16 --fit resize --epochs 1 --width 8 --batch 32")
                .code,
            0);
  const testing::Result ev = testing::Run(kLoom + " eval video --model " + Export("two") + " --judge " + judge +
                                          " --per-prompt 1 --steps 2 --batch 80 --real " + Clips() +
                                          "/test --real-limit 32 --template '{a_class} moving {direction}'");
  ASSERT_EQ(ev.code, 0) << ev.err;
  const nlohmann::json v = nlohmann::json::parse(testing::LastLine(ev.out + ev.err));
  EXPECT_EQ(v["clips"], 40);  // 10 classes x 4 directions
  EXPECT_EQ(v["frames"], 5);
  EXPECT_EQ(v["real_clips"], 32);
  EXPECT_GE(v["real_direction_accuracy"].get<double>(), 0.9) << v.dump();
  for (const char* key : {"class_accuracy", "vote_accuracy", "direction_accuracy", "class_flips"}) {
    EXPECT_GE(v[key].get<double>(), 0.0) << key;
    EXPECT_LE(v[key].get<double>(), 1.0) << key;
  }
  // An image VAE where a video VAE is needed.
  ASSERT_EQ(testing::Run(kLoom + " train " + kVae + " data.train=" + Images() + "/train run.dir=" + Runs() +
                         " run.name=image train.steps=2")
                .code,
            0);
  const testing::Result image = Train(kVideoDit, 1, "x", dit + "stage.vae=" + Export("image"));
  EXPECT_EQ(image.code, 2);
  EXPECT_NE(image.err.find("needs a 'video_vae' export"), std::string::npos) << image.err;
}

TEST_F(VideoTest, BadInputIsOneClearLine) {
  const auto fails = [&](const testing::Result& r, const std::string& fragment) {
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  fails(Train(kVideoVae, 1, "x", "data.train=" + Images() + "/train"), "trains on clips");
  fails(Train(kVideoVae, 1, "x", "data.frames=4"), "1 + k x 2 frames");
  fails(Train(kVideoVae, 1, "x", "data.frames=9"), "set data.frames: 5");
  fails(Train(kVideoVae, 1, "x", "data.frames=1"), "set data.frames to the frame count");
  EXPECT_FALSE(fs::exists(Run("x")));
  // An image dataset given to a video VAE's encoder, and clips the VAE was not made for.
  ASSERT_EQ(Train(kVideoVae, 1, "vae", "train.steps=2").code, 0);
  const std::string vae = Export("vae");
  fails(testing::Run(kLoom + " data encode --data " + Images() + "/train --with " + vae + " --out " + dir_.str() + "/c"),
        "reads 1-channel clips");
  EXPECT_FALSE(fs::exists(dir_.str() + "/c"));
}

}  // namespace
}  // namespace loom

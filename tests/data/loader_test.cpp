// The loader against the shards it reads: order and content equal direct reads, any
// worker count gives the same batches, restores continue exactly (also at another world
// size), shapes fit the config, and damage fails or is skipped as configured.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/loader.h"
#include "data/shard_reader.h"
#include "data/shard_writer.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

// Sample i's pixels are all (i * 7) % 256 except pixel 0, which is 255 - that, so a
// flip is visible; captions say the index.
void Write(const std::string& dir, const SampleSpec& spec, int n, int per_shard) {
  ShardWriterOptions o;
  o.dir = dir;
  o.samples_per_shard = per_shard;
  o.labels = true;
  auto w = ShardWriter::Create(spec, o);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> px(spec.bytes());
  for (int i = 0; i < n; ++i) {
    std::fill(px.begin(), px.end(), static_cast<uint8_t>((i * 7) % 256));
    px[0] = static_cast<uint8_t>(255 - px[1]);
    ASSERT_TRUE((*w)->Add(px.data(), "sample " + std::to_string(i), i % 10).ok());
  }
  ASSERT_TRUE((*w)->Finish().ok());
}

SampleSpec Gray(int h, int w) {
  SampleSpec s;
  s.height = h;
  s.width = w;
  return s;
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { Write(dir_.str(), Gray(6, 6), 103, 20); }
  LoaderOptions Options(int64_t batch, int rank = 0, int world = 1, int workers = 2) {
    LoaderOptions o;
    o.dir = dir_.str();
    o.batch = batch;
    o.rank = rank;
    o.world = world;
    o.workers = workers;
    o.prefetch = 3;
    return o;
  }
  std::vector<Batch> Take(const LoaderOptions& o, LoaderState s, int n, LoaderState* end = nullptr) {
    auto loader = Loader::Create(o, s);
    EXPECT_TRUE(loader.ok()) << loader.status();
    std::vector<Batch> out;
    for (int i = 0; i < n; ++i) {
      auto b = (*loader)->Next();
      EXPECT_TRUE(b.ok()) << b.status();
      out.push_back(*b);
    }
    if (end) *end = (*loader)->state();
    return out;
  }
  testing::TempDir dir_;
};

TEST_F(LoaderTest, BatchesFollowThePlanAndMatchTheShards) {
  const LoaderState start{0, 0, 42};
  const auto batches = Take(Options(8), start, 30);  // 12 batches per epoch: crosses 2 epochs
  const SamplePlan plan(103, 8, 42);
  LoaderState s = start;
  for (const Batch& b : batches) {
    const auto ids = plan.GlobalBatch(s);
    ASSERT_EQ(b.ids.size(0), 8);
    EXPECT_EQ(b.pixels.sizes(), (std::vector<int64_t>{8, 1, 6, 6}));
    for (int i = 0; i < 8; ++i) {
      ASSERT_EQ(b.ids[i].item<int64_t>(), ids[i]);
      EXPECT_EQ(b.captions[i], "sample " + std::to_string(ids[i]));
      EXPECT_EQ(b.labels[i].item<int64_t>(), ids[i] % 10);
      const float v = static_cast<float>((ids[i] * 7) % 256) / 127.5f - 1.0f;
      EXPECT_NEAR(b.pixels[i][0][3][3].item<float>(), v, 1e-6);
    }
    s = plan.Advance(s);
  }
}

TEST_F(LoaderTest, WorkerCountDoesNotChangeBatches) {
  const auto sync = Take(Options(8, 0, 1, 0), {0, 0, 1}, 15);
  for (int workers : {1, 3}) {
    const auto threaded = Take(Options(8, 0, 1, workers), {0, 0, 1}, 15);
    for (size_t i = 0; i < sync.size(); ++i) {
      EXPECT_TRUE(torch::equal(sync[i].pixels, threaded[i].pixels));
      EXPECT_TRUE(torch::equal(sync[i].ids, threaded[i].ids));
    }
  }
}

TEST_F(LoaderTest, RestoreContinuesExactlyAtAnyWorldSize) {
  LoaderState mid;
  Take(Options(12), {0, 0, 9}, 5, &mid);
  const auto straight = Take(Options(12), {0, 0, 9}, 20);
  // World 1 resumed.
  const auto resumed = Take(Options(12), mid, 15);
  for (int i = 0; i < 15; ++i) {
    EXPECT_TRUE(torch::equal(resumed[i].ids, straight[5 + i].ids)) << i;
    EXPECT_TRUE(torch::equal(resumed[i].pixels, straight[5 + i].pixels)) << i;
  }
  // World 3 resumed: the ranks' slices, concatenated, are the same global batches.
  std::vector<std::vector<Batch>> ranks;
  for (int r = 0; r < 3; ++r) ranks.push_back(Take(Options(12, r, 3), mid, 15));
  for (int i = 0; i < 15; ++i) {
    const torch::Tensor joined = torch::cat({ranks[0][i].ids, ranks[1][i].ids, ranks[2][i].ids});
    EXPECT_TRUE(torch::equal(joined, straight[5 + i].ids)) << i;
    EXPECT_EQ(ranks[1][i].ids.size(0), 4);
  }
}

TEST_F(LoaderTest, PadResizeFlipAndTokens) {
  auto o = Options(4);
  o.image_size = 10;
  o.fit = "pad";
  auto padded = Take(o, {0, 0, 3}, 1)[0];
  EXPECT_EQ(padded.pixels.sizes(), (std::vector<int64_t>{4, 1, 10, 10}));
  EXPECT_EQ(padded.pixels[0][0][0][0].item<float>(), -1.0f);  // the border is black
  o.fit = "resize";
  o.image_size = 3;
  EXPECT_EQ(Take(o, {0, 0, 3}, 1)[0].pixels.sizes(), (std::vector<int64_t>{4, 1, 3, 3}));

  // Flips: about half, and the same samples flipped whatever the world size.
  auto f = Options(20);
  f.flip = true;
  const Batch one = Take(f, {0, 0, 3}, 1)[0];
  int flipped = 0;
  for (int i = 0; i < 20; ++i) {
    // Pixel 0 differs from the rest, so a flip moves it from column 0 to column 5.
    flipped += one.pixels[i][0][0][5].item<float>() != one.pixels[i][0][3][3].item<float>();
  }
  EXPECT_GT(flipped, 3);
  EXPECT_LT(flipped, 17);
  auto f2 = f;
  f2.world = 2;
  f2.rank = 1;
  const Batch half = Take(f2, {0, 0, 3}, 1)[0];
  EXPECT_TRUE(torch::equal(half.pixels, one.pixels.narrow(0, 10, 10)));

  // Tokens when a tokenizer is given.
  std::vector<std::string> caps;
  for (int i = 0; i < 103; ++i) caps.push_back("sample " + std::to_string(i));
  auto tok = Tokenizer::Train(caps, 32);
  ASSERT_TRUE(tok.ok());
  auto t = Options(4);
  t.tokenizer = *tok;
  t.max_tokens = 6;
  const Batch with = Take(t, {0, 0, 3}, 1)[0];
  EXPECT_EQ(with.tokens.sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(with.mask.sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(with.tokens[0][0].item<int64_t>(), Tokenizer::kStart);
}

TEST_F(LoaderTest, ConfigThatDoesNotFitTheDataIsAnError) {
  auto o = Options(9, 0, 2);
  auto r = Loader::Create(o, {});
  EXPECT_NE(r.status().message().find("batch 9 does not divide by the world size 2"), absl::string_view::npos);
  o = Options(8);
  o.channels = 3;
  r = Loader::Create(o, {});
  EXPECT_NE(r.status().message().find("holds 1-channel samples but data.channels is 3"),
            absl::string_view::npos);
  o = Options(8);
  o.image_size = 4;
  o.fit = "pad";
  EXPECT_FALSE(Loader::Create(o, {}).ok());
  o = Options(200);
  EXPECT_NE(Loader::Create(o, {}).status().message().find("larger than the dataset"), absl::string_view::npos);
  o = Options(8);
  o.dir = dir_.str() + "/missing";
  EXPECT_EQ(Loader::Create(o, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST(LoaderVideo, ClipsComeAsBatchTimeChannelHeightWidth) {
  testing::TempDir dir;
  SampleSpec spec;
  spec.modality = Modality::kVideo;
  spec.frames = 4;
  spec.height = 5;
  spec.width = 5;
  spec.channels = 3;
  Write(dir.str(), spec, 10, 4);
  LoaderOptions o;
  o.dir = dir.str();
  o.batch = 2;
  o.image_size = 8;
  o.flip = true;
  auto loader = Loader::Create(o, {});
  ASSERT_TRUE(loader.ok());
  auto b = (*loader)->Next();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->pixels.sizes(), (std::vector<int64_t>{2, 4, 3, 8, 8}));
}

// A damaged sample: named with file and sample when failing, replaced and counted when
// skipping, and an error again past max_skipped.
TEST_F(LoaderTest, DamagedSampleFailsOrIsSkipped) {
  const std::string shard = dir_.str() + "/shard-00001.h5";  // samples 20..39
  {
    auto reader = ShardReader::Open(shard);
    ASSERT_TRUE(reader.ok());
    Sample s;
    ASSERT_TRUE((*reader)->Read(5, &s).ok());  // global id 25
  }
  // Sample 25's pixels are all 175 except pixel 0 (80): find that pattern and damage it.
  std::string bytes = testing::ReadAll(shard);
  std::string pattern(36, static_cast<char>(175));
  pattern[0] = static_cast<char>(80);
  const size_t at = bytes.find(pattern);
  ASSERT_NE(at, std::string::npos);
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at + 10));
    f.put(static_cast<char>(0));
  }
  // One batch holds almost every sample; no prefetch, so the skip count is this batch's.
  auto o = Options(100, 0, 1, /*workers=*/0);
  auto fail = Loader::Create(o, {0, 0, 4});
  ASSERT_TRUE(fail.ok());
  auto r = (*fail)->Next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::string(r.status().message()),
            shard + ": sample 5: checksum mismatch (the file is damaged; re-create or restore it)");

  o.skip_bad = true;
  auto skip = Loader::Create(o, {0, 0, 4});
  ASSERT_TRUE(skip.ok());
  auto ok = (*skip)->Next();
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*skip)->skipped(), 1);
  EXPECT_EQ(ok->ids.size(0), 100);
  o.max_skipped = 0;
  auto strict = Loader::Create(o, {0, 0, 4});
  auto over = (*strict)->Next();
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("more than 0 defective samples skipped"), absl::string_view::npos);
}

}  // namespace
}  // namespace loom::data

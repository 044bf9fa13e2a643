// Caches in shards (format 2): a dataset carries float32 values per sample beside its
// pixels; their checksum covers them; the manifest names each and its producer; the
// loader returns the ones asked for, and with flips the encoding of the flipped image,
// the same coin as the pixels'; asking for flips a cache lacks is an error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/inspect.h"
#include "data/loader.h"
#include "data/shard_reader.h"
#include "data/shard_writer.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

SampleSpec Gray(int side) {
  SampleSpec s;
  s.height = side;
  s.width = side;
  return s;
}

// Sample i: pixels all 0 but the first column 255 (a flip moves it); cache "z" holds
// [i, i + 0.5] and "z_flipped" [-i, -i - 0.5].
void WriteCached(const std::string& dir, int n, bool flipped = true) {
  ShardWriterOptions o;
  o.dir = dir;
  o.samples_per_shard = 7;
  o.caches = {{"z", {2}, {{"kind", "test"}, {"hash", "abc"}}}};
  if (flipped) o.caches.push_back({"z_flipped", {2}, {{"kind", "test"}, {"hash", "abc"}}});
  auto w = ShardWriter::Create(Gray(4), o);
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<uint8_t> px(16, 0);
  for (int y = 0; y < 4; ++y) px[y * 4] = 255;
  for (int i = 0; i < n; ++i) {
    const float values[] = {static_cast<float>(i), i + 0.5f, -static_cast<float>(i), -i - 0.5f};
    ASSERT_TRUE((*w)->Add(px.data(), "sample " + std::to_string(i), -1, values).ok());
  }
  ASSERT_TRUE((*w)->Finish().ok());
}

TEST(Caches, AreStoredReadAndChecked) {
  testing::TempDir dir;
  WriteCached(dir.str(), 20);
  auto m = ReadManifest(dir.str());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version(), 2);
  ASSERT_EQ(m->caches.size(), 2u);
  EXPECT_EQ(m->caches[1].name, "z_flipped");
  EXPECT_EQ(m->caches[0].producer.at("hash"), "abc");
  EXPECT_EQ(m->caches[1].producer.at("kind"), "test");
  auto r = ShardReader::Open(dir.str() + "/" + m->shards[1].file, &m->spec, m->caches);
  ASSERT_TRUE(r.ok()) << r.status();
  Sample s;
  ASSERT_TRUE((*r)->Read(2, &s).ok());  // sample 9
  EXPECT_EQ(s.caches, (std::vector<float>{9, 9.5f, -9, -9.5f}));
  EXPECT_TRUE(Inspect(dir.str()).ok());
  // Opened without the manifest's caches, a version-2 shard is refused.
  EXPECT_FALSE(ShardReader::Open(dir.str() + "/" + m->shards[0].file, &m->spec, {}).ok());
}

TEST(Caches, AnEarlierManifestsOneProducerStandsForEachCache) {
  testing::TempDir dir;
  WriteCached(dir.str(), 8);
  // As the first manifests of version 2 were: one "producer" beside "caches".
  const std::string path = dir.str() + "/manifest.json";
  nlohmann::json j = nlohmann::json::parse(std::ifstream(path));
  for (auto& c : j["caches"]) c.erase("producer");
  j["producer"] = {{"kind", "vae"}, {"hash", "old"}};
  std::ofstream(path, std::ios::trunc) << j.dump();
  auto m = ReadManifest(dir.str());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->caches[0].producer.at("hash"), "old");
  EXPECT_EQ(m->caches[1].producer.at("kind"), "vae");
}

TEST(Caches, TheSampleChecksumCoversThem) {
  const uint8_t px[4] = {1, 2, 3, 4};
  const float a[2] = {1, 2}, b[2] = {1, 2.0001f};
  EXPECT_NE(SampleChecksum(px, 4, "x", -1, a, 2), SampleChecksum(px, 4, "x", -1, b, 2));
  EXPECT_EQ(SampleChecksum(px, 4, "x", -1), SampleChecksum(px, 4, "x", -1, nullptr, 0));  // version 1 unchanged
  // A shard whose cache values do not match its checksums: the sample is named.
  testing::TempDir dir;
  const std::vector<float> values = {1, 2, 3, 4};
  const std::vector<uint32_t> sums = {SampleChecksum(px, 4, "a", -1, values.data(), 2),
                                      SampleChecksum(px, 4, "b", -1, b, 2)};  // not the stored {3, 4}
  SampleSpec spec = Gray(2);
  const std::string path = dir.str() + "/s.h5";
  ASSERT_TRUE(WriteShardFile(path, spec, 0, std::vector<uint8_t>{1, 2, 3, 4, 1, 2, 3, 4}, {"a", "b"}, nullptr, sums,
                             {{"z", {2}}}, values)
                  .ok());
  auto r = ShardReader::Open(path, &spec, {{"z", {2}}});
  ASSERT_TRUE(r.ok()) << r.status();
  Sample s;
  EXPECT_TRUE((*r)->Read(0, &s).ok());
  const absl::Status bad = (*r)->Read(1, &s);
  EXPECT_NE(bad.message().find("sample 1: checksum mismatch"), absl::string_view::npos) << bad;
}

TEST(Caches, TheLoaderFlipsThemWithThePixels) {
  testing::TempDir dir;
  WriteCached(dir.str(), 40);
  LoaderOptions o;
  o.dir = dir.str();
  o.batch = 8;
  o.flip = true;
  o.caches = {"z"};
  auto loader = Loader::Create(o, {0, 0, 11});
  ASSERT_TRUE(loader.ok()) << loader.status();
  int flipped = 0;
  for (int b = 0; b < 5; ++b) {
    auto batch = (*loader)->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->caches.at("z").sizes(), (std::vector<int64_t>{8, 2}));
    for (int64_t i = 0; i < 8; ++i) {
      const float id = static_cast<float>(batch->ids[i].item<int64_t>());
      const bool pixel_flipped = batch->pixels[i][0][0][3].item<float>() > 0;  // the bright column moved right
      const float want = pixel_flipped ? -id : id;
      EXPECT_EQ(batch->caches.at("z")[i][0].item<float>(), want) << "sample " << id;
      flipped += pixel_flipped;
    }
  }
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);
  // Without pixels: the caches alone.
  o.pixels = false;
  auto bare = Loader::Create(o, {0, 0, 11});
  ASSERT_TRUE(bare.ok());
  auto batch = (*bare)->Next();
  ASSERT_TRUE(batch.ok());
  EXPECT_FALSE(batch->pixels.defined());
  EXPECT_TRUE(batch->caches.count("z"));
}

TEST(Caches, FlipsThatWereNotEncodedAreRefused) {
  testing::TempDir dir;
  WriteCached(dir.str(), 10, /*flipped=*/false);
  LoaderOptions o;
  o.dir = dir.str();
  o.batch = 2;
  o.caches = {"z"};
  EXPECT_TRUE(Loader::Create(o, {}).ok());
  o.flip = true;
  const auto flipped = Loader::Create(o, {});
  ASSERT_FALSE(flipped.ok());
  EXPECT_NE(flipped.status().message().find("encoded without flips"), absl::string_view::npos) << flipped.status();
  o.flip = false;
  o.caches = {"latents"};
  const auto missing = Loader::Create(o, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("has no cache 'latents'"), absl::string_view::npos);
}

}  // namespace
}  // namespace loom::data

// Dataset makers: what they write is a valid dataset with the promised content.
#include <gtest/gtest.h>

#include <set>

#include "data/ingest/fashion_mnist.h"
#include "data/inspect.h"
#include "data/manifest.h"
#include "data/shard_reader.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

TEST(FashionMnist, CaptionsNameTheClassInSeveralWordings) {
  for (int label = 0; label < 10; ++label) {
    std::set<std::string> wordings;
    for (uint64_t v = 0; v < 12; ++v) {
      const std::string c = FashionCaption(label, v);
      EXPECT_NE(c.find(FashionClassNames()[label]), std::string::npos) << c;
      wordings.insert(c);
    }
    EXPECT_GE(wordings.size(), 5u);
  }
  EXPECT_EQ(FashionCaption(9, 3), "an ankle boot");
}

TEST(FashionMnist, IngestWritesLabelledShardsThatInspectPasses) {
  testing::TempDir dir;
  ASSERT_TRUE(IngestFashionMnist(kFashionMnistDir, dir.str(), 300).ok());
  auto report = Inspect(dir.str());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->datasets, 2);
  EXPECT_EQ(report->samples, 600);
  auto m = ReadManifest(dir.str() + "/train");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->spec.height, 28);
  EXPECT_EQ(m->label_names.size(), 10u);
  auto reader = ShardReader::Open(dir.str() + "/train/" + m->shards[0].file);
  ASSERT_TRUE(reader.ok());
  Sample s;
  ASSERT_TRUE((*reader)->Read(0, &s).ok());
  // The first Fashion-MNIST training image is an ankle boot (label 9).
  EXPECT_EQ(s.label, 9);
  EXPECT_NE(s.caption.find("ankle boot"), std::string::npos);
  int nonzero = 0;
  for (uint8_t p : s.pixels) nonzero += p > 0;
  EXPECT_GT(nonzero, 100);
}

}  // namespace
}  // namespace loom::data

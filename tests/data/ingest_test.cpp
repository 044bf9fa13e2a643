// Dataset makers from Fashion-MNIST (still images and moving clips): what they write is
// a valid dataset with the promised content.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "data/ingest/fashion_mnist.h"
#include "data/ingest/moving_fashion.h"
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

TEST(FashionMnist, LoadsEitherSplitAndRejectsOthers) {
  auto test = LoadFashionMnist("test");
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->count, 10000);
  EXPECT_EQ(test->height, 28);
  EXPECT_EQ(test->images.size(), 10000u * 28 * 28);
  EXPECT_EQ(test->labels.size(), 10000u);
  auto bad = LoadFashionMnist("validation");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("train and test"), std::string::npos);
  auto missing = LoadFashionMnist("train", "/nonexistent");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// Centre of mass of one [H, W] grayscale frame, in pixels.
void CentreOfMass(const std::vector<uint8_t>& pixels, int size, int frame, double* x, double* y) {
  double sx = 0, sy = 0, total = 0;
  const uint8_t* f = pixels.data() + static_cast<size_t>(frame) * size * size;
  for (int r = 0; r < size; ++r) {
    for (int c = 0; c < size; ++c) {
      sx += f[r * size + c] * (c + 0.5);
      sy += f[r * size + c] * (r + 0.5);
      total += f[r * size + c];
    }
  }
  *x = sx / total;
  *y = sy / total;
}

// Reads every sample of `dir`, checks clips against DescribeClip and the motion.
void CheckClips(const MovingFashionOptions& options) {
  auto m = ReadManifest(options.out);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->spec.ToString(), "video " + std::to_string(options.frames) + "x" +
                                    std::to_string(options.size) + "x" +
                                    std::to_string(options.size) + "x1");
  EXPECT_EQ(m->label_names, FashionClassNames());
  auto garments = LoadFashionMnist(options.split);
  ASSERT_TRUE(garments.ok());
  const int size = options.size, last = options.frames - 1;
  std::set<Motion> motions;
  int64_t index = 0;
  for (const ShardEntry& shard : m->shards) {
    auto reader = ShardReader::Open(options.out + "/" + shard.file);
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (int64_t i = 0; i < (*reader)->size(); ++i, ++index) {
      Sample s;
      ASSERT_TRUE((*reader)->Read(i, &s).ok());
      const ClipDescription clip = DescribeClip(options, *garments, index);
      motions.insert(clip.motion);
      EXPECT_EQ(s.label, clip.label);
      EXPECT_EQ(s.label, garments->labels[clip.garment]);
      EXPECT_EQ(s.caption, ClipCaption(clip));
      EXPECT_NE(s.caption.find(FashionClassNames()[s.label]), std::string::npos) << s.caption;
      EXPECT_NE(s.caption.find(MotionName(clip.motion)), std::string::npos) << s.caption;
      const size_t frame = static_cast<size_t>(size) * size;
      EXPECT_FALSE(
          std::equal(s.pixels.begin(), s.pixels.begin() + frame, s.pixels.begin() + last * frame))
          << "first and last frames are the same: " << s.caption;
      // The garment's centre of mass moves the stated way, and mostly that way. Clipping
      // at the canvas edge shortens the centre's travel (to about a third of the
      // garment's on a 28x28 canvas) and may shift it a little sideways.
      double x0, y0, x1, y1;
      CentreOfMass(s.pixels, size, 0, &x0, &y0);
      CentreOfMass(s.pixels, size, last, &x1, &y1);
      const double dx = x1 - x0, dy = y1 - y0;
      const double along = std::fabs(clip.dx + clip.dy) * last;
      switch (clip.motion) {
        case Motion::kLeft: EXPECT_LT(dx, -0.25 * along) << s.caption; break;
        case Motion::kRight: EXPECT_GT(dx, 0.25 * along) << s.caption; break;
        case Motion::kUp: EXPECT_LT(dy, -0.25 * along) << s.caption; break;
        case Motion::kDown: EXPECT_GT(dy, 0.25 * along) << s.caption; break;
        default: ADD_FAILURE() << "clip without motion";
      }
      const bool horizontal = clip.motion == Motion::kLeft || clip.motion == Motion::kRight;
      EXPECT_LT(std::fabs(horizontal ? dy : dx), std::fabs(horizontal ? dx : dy)) << s.caption;
    }
  }
  EXPECT_EQ(index, options.count);
  EXPECT_EQ(motions.size(), 4u);
}

TEST(MovingFashion, GarmentsMoveInTheStatedDirection) {
  testing::TempDir dir;
  MovingFashionOptions options;
  options.out = dir.str();
  options.count = 40;
  options.frames = 6;
  options.size = 48;
  options.seed = 3;
  auto m = WriteMovingFashion(options);
  ASSERT_TRUE(m.ok()) << m.status();
  auto report = Inspect(dir.str());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples, 40);
  CheckClips(options);
}

TEST(MovingFashion, MovesEvenOnACanvasTheSizeOfTheGarment) {
  testing::TempDir dir;
  MovingFashionOptions options;
  options.out = dir.str();
  options.count = 20;
  options.frames = 4;
  options.size = 28;
  options.split = "test";
  ASSERT_TRUE(WriteMovingFashion(options).ok());
  ASSERT_TRUE(Inspect(dir.str()).ok());
  CheckClips(options);
}

TEST(MovingFashion, SameSeedSameClips) {
  testing::TempDir a, b;
  MovingFashionOptions options;
  options.count = 10;
  options.frames = 3;
  options.size = 32;
  options.seed = 8;
  options.out = a.str();
  ASSERT_TRUE(WriteMovingFashion(options).ok());
  options.out = b.str();
  ASSERT_TRUE(WriteMovingFashion(options).ok());
  auto ra = ShardReader::Open(a.str() + "/shard-00000.h5");
  auto rb = ShardReader::Open(b.str() + "/shard-00000.h5");
  ASSERT_TRUE(ra.ok() && rb.ok());
  for (int64_t i = 0; i < 10; ++i) {
    Sample sa, sb;
    ASSERT_TRUE((*ra)->Read(i, &sa).ok() && (*rb)->Read(i, &sb).ok());
    EXPECT_EQ(sa.pixels, sb.pixels) << i;
    EXPECT_EQ(sa.caption, sb.caption) << i;
    EXPECT_EQ(sa.label, sb.label) << i;
  }
}

TEST(MovingFashion, RejectsCanvasesSmallerThanTheGarment) {
  testing::TempDir dir;
  MovingFashionOptions options;
  options.out = dir.str();
  options.count = 5;
  options.frames = 4;
  options.size = 20;
  EXPECT_EQ(WriteMovingFashion(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.size = 32;
  options.frames = 1;
  EXPECT_EQ(WriteMovingFashion(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom::data

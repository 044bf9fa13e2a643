// `loom data shapes`: valid datasets whose captions and pixels agree with the scene
// each sample is said to show, the same bytes for the same seed.
#include "data/ingest/shapes.h"

#include <gtest/gtest.h>

#include <cmath>

#include "data/inspect.h"
#include "data/manifest.h"
#include "data/shard_reader.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

// Every sample of the single-shard dataset in `dir`.
std::vector<Sample> ReadAllSamples(const std::string& dir) {
  auto m = ReadManifest(dir);
  EXPECT_TRUE(m.ok()) << m.status();
  std::vector<Sample> samples;
  for (const ShardEntry& shard : m->shards) {
    auto reader = ShardReader::Open(dir + "/" + shard.file);
    EXPECT_TRUE(reader.ok()) << reader.status();
    for (int64_t i = 0; i < (*reader)->size(); ++i) {
      Sample s;
      EXPECT_TRUE((*reader)->Read(i, &s).ok());
      samples.push_back(std::move(s));
    }
  }
  return samples;
}

const uint8_t* Pixel(const Sample& s, int size, int frame, int x, int y) {
  return s.pixels.data() + ((static_cast<size_t>(frame) * size + y) * size + x) * 3;
}

bool Is(const uint8_t* p, const uint8_t* rgb) {
  return p[0] == rgb[0] && p[1] == rgb[1] && p[2] == rgb[2];
}

// Centroid (in pixels) of the pixels of exactly `rgb` in a frame; false when none.
bool Centroid(const Sample& s, int size, int frame, const uint8_t* rgb, double* cx, double* cy) {
  double sx = 0, sy = 0;
  int n = 0;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      if (!Is(Pixel(s, size, frame, x, y), rgb)) continue;
      sx += x + 0.5;
      sy += y + 0.5;
      ++n;
    }
  }
  if (n == 0) return false;
  *cx = sx / n;
  *cy = sy / n;
  return true;
}

std::vector<std::string> Split(const std::string& text, const std::string& sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at; (at = text.find(sep, start)) != std::string::npos; start = at + sep.size()) {
    parts.push_back(text.substr(start, at - start));
  }
  parts.push_back(text.substr(start));
  return parts;
}

// The 3x3 grid cell that position words ("at the top left", "in the centre") name.
void CellNamedBy(const std::string& words, int* row, int* col) {
  const auto has = [&](const char* w) { return words.find(w) != std::string::npos; };
  *row = has(" top") ? 0 : has(" bottom") ? 2 : 1;
  *col = has(" left") ? 0 : has(" right") ? 2 : 1;
}

TEST(Shapes, CaptionsStateShapeColourSizeAndPosition) {
  Scene scene;
  SceneObject a;
  a.shape = 0, a.colour = 0, a.large = true, a.row = 0, a.col = 0;
  SceneObject b;
  b.shape = 1, b.colour = 2, b.large = false, b.row = 2, b.col = 2;
  scene.objects = {a, b};
  EXPECT_EQ(SceneCaption(scene),
            "a large red circle at the top left and a small blue square at the bottom right");
  scene.video = true;
  scene.objects = {b};
  scene.objects[0].shape = 2, scene.objects[0].colour = 1, scene.objects[0].motion = Motion::kLeft;
  EXPECT_EQ(SceneCaption(scene), "a small green triangle moving left");
  EXPECT_EQ(PositionPhrase(1, 1), "in the centre");
}

TEST(Shapes, EachShapeHasItsOwnSilhouette) {
  // One large object in the middle of a 128 x 128 image (half-extent 17.9 px); two
  // probes tell the shapes apart: A at (0.75h, -0.75h) is inside only the square, B
  // at (0.6h, 0) inside the circle and the square but not the triangle.
  for (int shape = 0; shape < 3; ++shape) {
    Scene scene;
    SceneObject o;
    o.shape = shape, o.colour = 3, o.large = true, o.row = 1, o.col = 1;
    o.x = o.y = 0.5, o.half = 0.14;
    scene.objects = {o};
    Sample s;
    s.pixels = RenderScene(scene, 128, 1);
    const uint8_t* yellow = ShapeColours()[3].rgb;
    EXPECT_TRUE(Is(Pixel(s, 128, 0, 64, 64), yellow)) << shape;
    EXPECT_EQ(Is(Pixel(s, 128, 0, 77, 50), yellow), shape == 1) << shape;
    EXPECT_EQ(Is(Pixel(s, 128, 0, 74, 64), yellow), shape != 2) << shape;
    EXPECT_TRUE(Is(Pixel(s, 128, 0, 2, 2), kShapesBackground));
  }
}

TEST(Shapes, ImagesShowWhatTheCaptionSays) {
  testing::TempDir dir;
  ShapesOptions options{.out = dir.str(), .count = 60, .size = 48, .frames = 1, .seed = 11};
  auto m = WriteShapes(options);
  ASSERT_TRUE(m.ok()) << m.status();
  auto report = Inspect(dir.str());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples, 60);
  EXPECT_EQ(m->spec.ToString(), "image 48x48x3");
  EXPECT_EQ(m->label_names, ShapeNames());
  const std::vector<Sample> samples = ReadAllSamples(dir.str());
  ASSERT_EQ(samples.size(), 60u);
  int two_objects = 0;
  for (int i = 0; i < 60; ++i) {
    const Scene scene = DescribeScene(options, i);
    const Sample& s = samples[i];
    EXPECT_EQ(s.caption, SceneCaption(scene));
    EXPECT_EQ(s.label, scene.objects[0].shape);
    two_objects += scene.objects.size() == 2;
    for (const SceneObject& o : scene.objects) {
      const uint8_t* rgb = ShapeColours()[o.colour].rgb;
      EXPECT_TRUE(Is(Pixel(s, 48, 0, static_cast<int>(o.x * 48), static_cast<int>(o.y * 48)), rgb))
          << i << ": " << s.caption;
    }
    // Read the caption as a person would: each "a SIZE COLOUR SHAPE POSITION" part
    // names a colour whose pixels are centred in the grid cell its words name.
    const std::vector<std::string> parts = Split(s.caption, " and ");
    ASSERT_EQ(parts.size(), scene.objects.size());
    const bool same_colour =
        parts.size() == 2 && scene.objects[0].colour == scene.objects[1].colour;
    for (const std::string& part : parts) {
      if (same_colour) break;
      const ShapeColour* named = nullptr;
      for (const ShapeColour& c : ShapeColours()) {
        if (part.find(" " + c.name + " ") != std::string::npos) named = &c;
      }
      ASSERT_NE(named, nullptr) << part;
      double cx = 0, cy = 0;
      ASSERT_TRUE(Centroid(s, 48, 0, named->rgb, &cx, &cy)) << part;
      int row = 0, col = 0;
      CellNamedBy(part, &row, &col);
      EXPECT_EQ(static_cast<int>(cy * 3 / 48), row) << i << ": " << part;
      EXPECT_EQ(static_cast<int>(cx * 3 / 48), col) << i << ": " << part;
    }
    for (int y = 0; y < 48; ++y) {
      for (int x = 0; x < 48; ++x) {
        if (Is(Pixel(s, 48, 0, x, y), kShapesBackground)) continue;
        // Every other pixel lies in the cell of one of the objects.
        bool in_a_cell = false;
        for (const SceneObject& o : scene.objects) {
          in_a_cell |= x * 3 / 48 == o.col && y * 3 / 48 == o.row;
        }
        ASSERT_TRUE(in_a_cell) << "sample " << i << " pixel " << x << "," << y;
      }
    }
  }
  EXPECT_GT(two_objects, 10);
  EXPECT_LT(two_objects, 50);
}

TEST(Shapes, VideosMoveTheWayTheCaptionSays) {
  testing::TempDir dir;
  ShapesOptions options{.out = dir.str(), .count = 30, .size = 48, .frames = 8, .seed = 5};
  auto m = WriteShapes(options);
  ASSERT_TRUE(m.ok()) << m.status();
  auto report = Inspect(dir.str());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(m->spec.ToString(), "video 8x48x48x3");
  const std::vector<Sample> samples = ReadAllSamples(dir.str());
  ASSERT_EQ(samples.size(), 30u);
  for (int i = 0; i < 30; ++i) {
    const Scene scene = DescribeScene(options, i);
    const Sample& s = samples[i];
    EXPECT_EQ(s.caption, SceneCaption(scene));
    const bool same_colour =
        scene.objects.size() == 2 && scene.objects[0].colour == scene.objects[1].colour;
    for (const SceneObject& o : scene.objects) {
      EXPECT_NE(s.caption.find(ShapeNames()[o.shape] + " moving " + MotionName(o.motion)),
                std::string::npos);
      const uint8_t* rgb = ShapeColours()[o.colour].rgb;
      for (int t = 0; t < 8; ++t) {
        double x = 0, y = 0;
        ObjectCentre(o, t, 8, &x, &y);
        EXPECT_TRUE(Is(Pixel(s, 48, t, static_cast<int>(x * 48), static_cast<int>(y * 48)), rgb));
      }
      if (same_colour) continue;
      double x0, y0, x1, y1;
      ASSERT_TRUE(Centroid(s, 48, 0, rgb, &x0, &y0));
      ASSERT_TRUE(Centroid(s, 48, 7, rgb, &x1, &y1));
      const double dx = x1 - x0, dy = y1 - y0;
      const double moved = o.travel * 48;
      EXPECT_GT(moved, 3.0);
      switch (o.motion) {
        case Motion::kLeft: EXPECT_LT(dx, -0.8 * moved) << s.caption; break;
        case Motion::kRight: EXPECT_GT(dx, 0.8 * moved) << s.caption; break;
        case Motion::kUp: EXPECT_LT(dy, -0.8 * moved) << s.caption; break;
        case Motion::kDown: EXPECT_GT(dy, 0.8 * moved) << s.caption; break;
        default: ADD_FAILURE() << "video object without motion";
      }
      // And not along the other axis.
      const bool horizontal = o.motion == Motion::kLeft || o.motion == Motion::kRight;
      EXPECT_LT(std::fabs(horizontal ? dy : dx), 1.0) << s.caption;
    }
  }
}

TEST(Shapes, SameSeedSameSamplesOtherSeedOthers) {
  testing::TempDir a, b, c;
  ShapesOptions options{.out = a.str(), .count = 20, .size = 32, .frames = 4, .seed = 9};
  ASSERT_TRUE(WriteShapes(options).ok());
  options.out = b.str();
  ASSERT_TRUE(WriteShapes(options).ok());
  options.out = c.str();
  options.seed = 10;
  ASSERT_TRUE(WriteShapes(options).ok());
  const auto sa = ReadAllSamples(a.str()), sb = ReadAllSamples(b.str()),
             sc = ReadAllSamples(c.str());
  ASSERT_EQ(sa.size(), 20u);
  ASSERT_EQ(sb.size(), 20u);
  int differ = 0;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(sa[i].pixels, sb[i].pixels) << i;
    EXPECT_EQ(sa[i].caption, sb[i].caption) << i;
    differ += sa[i].pixels != sc[i].pixels;
  }
  EXPECT_GT(differ, 15);
}

TEST(Shapes, RejectsSizesItCannotDraw) {
  testing::TempDir dir;
  EXPECT_EQ(WriteShapes({.out = dir.str(), .count = 5, .size = 8}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteShapes({.out = dir.str(), .count = 0, .size = 32}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "manifest.json"));
}

}  // namespace
}  // namespace loom::data

// Synthetic shape scenes: description, captions, drawing and writing (see shapes.h).
#include "data/ingest/shapes.h"

#include <algorithm>
#include <cmath>

#include "core/status.h"
#include "data/ingest/output_guard.h"
#include "core/rng.h"
#include "data/shard_writer.h"

namespace loom::data {
namespace {

// Half-extents as fractions of the side. A large object fits a third of the side
// (one grid cell) with room to spare; a small one reads as clearly smaller.
constexpr double kLargeHalf = 0.14;
constexpr double kSmallHalf = 0.08;
// Kept free between an object and its cell or region border, so objects never touch.
constexpr double kMargin = 0.01;
// The square's half side relative to `half`, so a square looks as big as a circle.
constexpr double kSquareScale = 0.85;

SceneObject RandomLook(SplitMix64& rng) {
  SceneObject o;
  o.shape = rng.Int(3);
  o.colour = rng.Int(static_cast<int>(ShapeColours().size()));
  o.large = rng.Int(2) == 1;
  o.half = o.large ? kLargeHalf : kSmallHalf;
  return o;
}

// Images: objects in distinct cells of a 3x3 grid, jittered within their cell.
void PlaceInGrid(SplitMix64& rng, int n, Scene* scene) {
  const int first = rng.Int(9);
  const int cells[2] = {first, (first + 1 + rng.Int(8)) % 9};
  for (int k = 0; k < n; ++k) {
    SceneObject o = RandomLook(rng);
    o.row = cells[k] / 3;
    o.col = cells[k] % 3;
    const double slack = 1.0 / 6 - o.half - kMargin;
    o.x = (o.col + 0.5) / 3 + rng.Uniform(-slack, slack);
    o.y = (o.row + 0.5) / 3 + rng.Uniform(-slack, slack);
    scene->objects.push_back(o);
  }
}

// Videos: each object moves within its own region (the whole frame, or one half when
// there are two), so their paths never cross and each stays fully in view.
void PlaceMoving(SplitMix64& rng, int n, Scene* scene) {
  const bool split_left_right = rng.Int(2) == 0;
  for (int k = 0; k < n; ++k) {
    double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (n == 2 && split_left_right) (k == 0 ? x1 : x0) = 0.5;
    if (n == 2 && !split_left_right) (k == 0 ? y1 : y0) = 0.5;
    SceneObject o = RandomLook(rng);
    o.motion = static_cast<Motion>(1 + rng.Int(4));
    const bool horizontal = o.motion == Motion::kLeft || o.motion == Motion::kRight;
    const double a0 = horizontal ? x0 : y0, a1 = horizontal ? x1 : y1;
    const double b0 = horizontal ? y0 : x0, b1 = horizontal ? y1 : x1;
    const double lo = a0 + o.half + kMargin, hi = a1 - o.half - kMargin;
    o.travel = (hi - lo) * rng.Uniform(0.7, 1.0);
    const double low_end = rng.Uniform(lo, hi - o.travel);
    const bool decreasing = o.motion == Motion::kLeft || o.motion == Motion::kUp;
    const double along = decreasing ? low_end + o.travel : low_end;
    const double across = rng.Uniform(b0 + o.half + kMargin, b1 - o.half - kMargin);
    o.x = horizontal ? along : across;
    o.y = horizontal ? across : along;
    scene->objects.push_back(o);
  }
}

// Whether the offset (dx, dy) from the centre lies inside the shape of half-extent h.
bool Inside(int shape, double dx, double dy, double h) {
  switch (shape) {
    case 0: return dx * dx + dy * dy <= h * h;
    case 1: return std::fabs(dx) <= kSquareScale * h && std::fabs(dy) <= kSquareScale * h;
    default:  // apex at the top (0, -h), base from (-h, h) to (h, h)
      return dy <= h && std::fabs(dx) <= (dy + h) * 0.5;
  }
}

// Draws one object into an RGB frame, anti-aliased by 4x4 supersampling: each
// pixel's coverage blends the colour over what is there; fully covered pixels get
// exactly the object's colour.
void DrawObject(const SceneObject& o, double cx, double cy, int size, uint8_t* frame) {
  const double h = o.half * size;
  const uint8_t* rgb = ShapeColours()[o.colour].rgb;
  const int px0 = std::max(0, static_cast<int>(std::floor(cx - h)));
  const int px1 = std::min(size - 1, static_cast<int>(std::ceil(cx + h)));
  const int py0 = std::max(0, static_cast<int>(std::floor(cy - h)));
  const int py1 = std::min(size - 1, static_cast<int>(std::ceil(cy + h)));
  for (int py = py0; py <= py1; ++py) {
    for (int px = px0; px <= px1; ++px) {
      int covered = 0;
      for (int sy = 0; sy < 4; ++sy) {
        for (int sx = 0; sx < 4; ++sx) {
          covered += Inside(o.shape, px + (sx + 0.5) / 4 - cx, py + (sy + 0.5) / 4 - cy, h);
        }
      }
      if (covered == 0) continue;
      uint8_t* p = frame + (static_cast<size_t>(py) * size + px) * 3;
      for (int c = 0; c < 3; ++c) {
        p[c] = static_cast<uint8_t>((p[c] * (16 - covered) + rgb[c] * covered + 8) / 16);
      }
    }
  }
}

}  // namespace

const std::vector<std::string>& ShapeNames() {
  static const std::vector<std::string> names = {"circle", "square", "triangle"};
  return names;
}

const std::vector<ShapeColour>& ShapeColours() {
  // Saturated and far apart, so a judge can tell them apart after generation.
  static const std::vector<ShapeColour> colours = {
      {"red", {220, 40, 40}},     {"green", {40, 200, 60}},   {"blue", {50, 90, 235}},
      {"yellow", {235, 215, 40}}, {"purple", {150, 60, 200}}, {"white", {240, 240, 240}}};
  return colours;
}

std::string PositionPhrase(int row, int col) {
  static const char* const phrases[3][3] = {
      {"at the top left", "at the top", "at the top right"},
      {"on the left", "in the centre", "on the right"},
      {"at the bottom left", "at the bottom", "at the bottom right"}};
  return phrases[row][col];
}

std::string MotionName(Motion motion) {
  switch (motion) {
    case Motion::kLeft: return "left";
    case Motion::kRight: return "right";
    case Motion::kUp: return "up";
    case Motion::kDown: return "down";
    default: return "";
  }
}

Scene DescribeScene(const ShapesOptions& options, int64_t index) {
  SplitMix64 rng(SeedFor(options.seed, 0x53434e45ull /* stream */, static_cast<uint64_t>(index)));
  Scene scene;
  scene.video = options.frames > 1;
  const int n = 1 + rng.Int(2);
  if (scene.video) {
    PlaceMoving(rng, n, &scene);
  } else {
    PlaceInGrid(rng, n, &scene);
  }
  return scene;
}

std::string SceneCaption(const Scene& scene) {
  std::string caption;
  for (const SceneObject& o : scene.objects) {
    if (!caption.empty()) caption += " and ";
    caption += std::string("a ") + (o.large ? "large " : "small ") + ShapeColours()[o.colour].name +
               " " + ShapeNames()[o.shape] + " ";
    caption += scene.video ? "moving " + MotionName(o.motion) : PositionPhrase(o.row, o.col);
  }
  return caption;
}

void ObjectCentre(const SceneObject& o, int t, int frames, double* x, double* y) {
  const double moved = frames > 1 ? o.travel * t / (frames - 1) : 0.0;
  *x = o.x + (o.motion == Motion::kRight ? moved : o.motion == Motion::kLeft ? -moved : 0.0);
  *y = o.y + (o.motion == Motion::kDown ? moved : o.motion == Motion::kUp ? -moved : 0.0);
}

std::vector<uint8_t> RenderScene(const Scene& scene, int size, int frames) {
  const size_t frame_bytes = static_cast<size_t>(size) * size * 3;
  std::vector<uint8_t> pixels(frame_bytes * frames);
  for (int t = 0; t < frames; ++t) {
    uint8_t* frame = pixels.data() + frame_bytes * t;
    for (size_t i = 0; i < frame_bytes; i += 3) std::copy_n(kShapesBackground, 3, frame + i);
    for (const SceneObject& o : scene.objects) {
      double x = 0, y = 0;
      ObjectCentre(o, t, frames, &x, &y);
      DrawObject(o, x * size, y * size, size, frame);
    }
  }
  return pixels;
}

absl::StatusOr<Manifest> WriteShapes(const ShapesOptions& options) {
  if (options.count < 1) return absl::InvalidArgumentError("--count must be at least 1");
  if (options.size < 16 || options.size > 1024) {
    return absl::InvalidArgumentError(
        "--size must be 16..1024 (below 16 the shapes are unreadable), not " +
        std::to_string(options.size));
  }
  if (options.frames < 1 || options.frames > 256) {
    return absl::InvalidArgumentError("--frames must be 1..256, not " +
                                      std::to_string(options.frames));
  }
  SampleSpec spec;
  spec.modality = options.frames > 1 ? Modality::kVideo : Modality::kImage;
  spec.frames = options.frames;
  spec.height = spec.width = options.size;
  spec.channels = 3;
  ShardWriterOptions writer_options;
  writer_options.dir = options.out;
  writer_options.labels = true;
  writer_options.label_names = ShapeNames();
  writer_options.source = "loom data shapes --size " + std::to_string(options.size) + " --frames " +
                          std::to_string(options.frames) + " --seed " +
                          std::to_string(options.seed);
  OutputGuard guard(options.out);
  ASSIGN_OR_RETURN(auto writer, ShardWriter::Create(spec, writer_options));
  for (int64_t i = 0; i < options.count; ++i) {
    const Scene scene = DescribeScene(options, i);
    const std::vector<uint8_t> pixels = RenderScene(scene, options.size, options.frames);
    RETURN_IF_ERROR(writer->Add(pixels.data(), SceneCaption(scene), scene.objects[0].shape));
  }
  ASSIGN_OR_RETURN(Manifest manifest, writer->Finish());
  guard.Commit();
  return manifest;
}

}  // namespace loom::data

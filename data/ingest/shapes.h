// `loom data shapes`: synthetic scenes of one or two coloured circles, squares and
// triangles on a dark background, as images or as clips of moving objects, with
// captions that state exactly what is drawn. A scene is a pure function of (seed,
// index), so DescribeScene gives the ground truth an evaluator judges samples by.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/manifest.h"

namespace loom::data {

struct ShapesOptions {
  std::string out;    // dataset directory
  int64_t count = 0;  // samples
  int size = 0;       // S: samples are S x S RGB
  int frames = 1;     // T > 1 writes video clips [T, S, S, 3] of moving objects
  uint64_t seed = 0;  // same options, same samples (pixels, captions, labels)
};

enum class Motion { kNone, kLeft, kRight, kUp, kDown };

// One drawn object. Positions are fractions of the side (0 = left/top edge, 1 =
// right/bottom), so a scene describes a sample at any resolution.
struct SceneObject {
  int shape = 0;   // index into ShapeNames(); the sample's label is the first object's
  int colour = 0;  // index into ShapeColours()
  bool large = false;
  int row = -1;  // images: cell of the 3x3 grid the caption names (PositionPhrase);
  int col = -1;  // videos: -1, their captions name the motion instead
  Motion motion = Motion::kNone;  // videos only
  double x = 0;                   // centre in frame 0
  double y = 0;
  double half = 0;    // the object lies within [x - half, x + half] x [y - half, y + half]
  double travel = 0;  // distance the centre moves from the first frame to the last
};

struct Scene {
  std::vector<SceneObject> objects;  // one or two, never overlapping
  bool video = false;
};

// "circle", "square", "triangle": label i's name.
const std::vector<std::string>& ShapeNames();

struct ShapeColour {
  std::string name;
  uint8_t rgb[3];
};
// red, green, blue, yellow, purple, white.
const std::vector<ShapeColour>& ShapeColours();

// The background every sample is drawn on.
inline constexpr uint8_t kShapesBackground[3] = {18, 18, 24};

// "at the top left", "in the centre", "on the right", ... for a 3x3 grid cell.
std::string PositionPhrase(int row, int col);
// "left", "right", "up", "down" ("" for kNone).
std::string MotionName(Motion motion);

// The scene of sample `index` (options.seed and options.frames matter, not the size).
Scene DescribeScene(const ShapesOptions& options, int64_t index);

// "a large red circle at the top left and a small blue square at the bottom right";
// for video "a small green triangle moving left".
std::string SceneCaption(const Scene& scene);

// Centre of `object` in frame t of `frames`, as fractions of the side.
void ObjectCentre(const SceneObject& object, int t, int frames, double* x, double* y);

// Draws the scene: size*size*3 bytes per frame, `frames` frames, [T,]H,W,C order.
std::vector<uint8_t> RenderScene(const Scene& scene, int size, int frames);

// Writes options.count samples into options.out; labels are the first object's shape.
absl::StatusOr<Manifest> WriteShapes(const ShapesOptions& options);

}  // namespace loom::data

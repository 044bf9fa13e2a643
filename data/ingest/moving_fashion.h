// `loom data moving-fashion`: video clips of one real Fashion-MNIST garment sliding
// across a dark grayscale canvas, captioned with the item and its direction ("a
// sneaker moving right"). A clip is a pure function of (seed, index), so DescribeClip
// gives the ground truth an evaluator judges generated clips by.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "data/ingest/fashion_mnist.h"
#include "data/ingest/shapes.h"  // defines: Motion, MotionName
#include "data/manifest.h"

namespace loom::data {

struct MovingFashionOptions {
  std::string out;                        // dataset directory
  int64_t count = 0;                      // clips
  int frames = 0;                         // T >= 2
  int size = 0;                           // S >= 28: the canvas is S x S, the garment 28 x 28
  uint64_t seed = 0;                      // same options, same samples (pixels, captions, labels)
  std::string split = "train";            // which Fashion-MNIST split gives the garments
  std::string source = kFashionMnistDir;  // directory of the IDX .gz files
};

// What clip `index` shows. Pixel coordinates are of the garment's top-left corner on
// the canvas; it moves by (dx, dy) per frame, rounded to whole pixels.
struct ClipDescription {
  int64_t garment = 0;  // index into the Fashion-MNIST split
  int label = 0;        // its class
  Motion motion = Motion::kNone;
  double x0 = 0;  // top-left corner in frame 0
  double y0 = 0;
  double dx = 0;  // movement per frame
  double dy = 0;
  int variant = 0;  // caption wording
};

// The clip of sample `index`, drawing its garment from `garments` (the loaded split).
ClipDescription DescribeClip(const MovingFashionOptions& options, const FashionMnist& garments,
                             int64_t index);

// "a sneaker moving right", "a pair of trousers sliding to the left", ...
std::string ClipCaption(const ClipDescription& clip);

// Draws the clip: frames * size * size bytes, [T, H, W] order.
std::vector<uint8_t> RenderClip(const ClipDescription& clip, const FashionMnist& garments, int size,
                                int frames);

// Writes options.count clips into options.out; labels are the garment's class.
absl::StatusOr<Manifest> WriteMovingFashion(const MovingFashionOptions& options);

}  // namespace loom::data

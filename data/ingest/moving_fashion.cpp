// Moving Fashion-MNIST clips: description, captions, drawing and writing (see
// moving_fashion.h).
#include "data/ingest/moving_fashion.h"

#include <algorithm>
#include <cmath>

#include "core/status.h"
#include "data/ingest/image_ops.h"
#include "data/ingest/output_guard.h"
#include "core/rng.h"
#include "data/shard_writer.h"

namespace loom::data {
namespace {

constexpr int kGarment = 28;  // Fashion-MNIST images are 28 x 28
// The least distance a garment travels in a clip. On a canvas barely larger than the
// garment it would hardly move while staying in view, so there it leaves the frame a
// little at either end instead.
constexpr int kMinTravel = 8;
constexpr int kWordings = 4;

std::string Towards(Motion motion) {
  switch (motion) {
    case Motion::kLeft: return "to the left";
    case Motion::kRight: return "to the right";
    case Motion::kUp: return "upwards";
    default: return "downwards";
  }
}

}  // namespace

ClipDescription DescribeClip(const MovingFashionOptions& options, const FashionMnist& garments,
                             int64_t index) {
  SplitMix64 rng(SeedFor(options.seed, 0x53434e45ull /* stream */, static_cast<uint64_t>(index)));
  ClipDescription clip;
  clip.garment = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(garments.count));
  clip.label = garments.labels[clip.garment];
  clip.motion = static_cast<Motion>(1 + rng.Int(4));
  clip.variant = rng.Int(kWordings);
  const int room = options.size - kGarment;  // top-left positions that keep it in view
  const double travel = std::max(room, kMinTravel) * rng.Uniform(0.7, 1.0);
  const double low_end = travel <= room ? rng.Uniform(0, room - travel) : (room - travel) / 2;
  const double across = rng.Uniform(0, room);
  const bool decreasing = clip.motion == Motion::kLeft || clip.motion == Motion::kUp;
  const double along = decreasing ? low_end + travel : low_end;
  const double step = (decreasing ? -travel : travel) / (options.frames - 1);
  const bool horizontal = clip.motion == Motion::kLeft || clip.motion == Motion::kRight;
  clip.x0 = horizontal ? along : across;
  clip.y0 = horizontal ? across : along;
  clip.dx = horizontal ? step : 0;
  clip.dy = horizontal ? 0 : step;
  return clip;
}

std::string ClipCaption(const ClipDescription& clip) {
  const std::string& item = FashionItemPhrase(clip.label);
  const std::string direction = MotionName(clip.motion);
  switch (clip.variant % kWordings) {
    case 0: return item + " moving " + direction;
    case 1: return item + " sliding " + Towards(clip.motion);
    case 2: return "a video of " + item + " moving " + direction;
    default: return item + " that moves " + Towards(clip.motion);
  }
}

std::vector<uint8_t> RenderClip(const ClipDescription& clip, const FashionMnist& garments, int size,
                                int frames) {
  Image sprite;
  sprite.width = garments.width;
  sprite.height = garments.height;
  sprite.channels = 1;
  sprite.pixels.assign(garments.image(clip.garment),
                       garments.image(clip.garment) + garments.width * garments.height);
  std::vector<uint8_t> pixels;
  pixels.reserve(static_cast<size_t>(frames) * size * size);
  for (int t = 0; t < frames; ++t) {
    Image canvas;
    canvas.width = canvas.height = size;
    canvas.channels = 1;
    canvas.pixels.assign(static_cast<size_t>(size) * size, 0);
    const int x = static_cast<int>(std::lround(clip.x0 + clip.dx * t));
    const int y = static_cast<int>(std::lround(clip.y0 + clip.dy * t));
    PasteMax(sprite, x, y, &canvas);
    pixels.insert(pixels.end(), canvas.pixels.begin(), canvas.pixels.end());
  }
  return pixels;
}

absl::StatusOr<Manifest> WriteMovingFashion(const MovingFashionOptions& options) {
  if (options.count < 1) return absl::InvalidArgumentError("--count must be at least 1");
  if (options.size < kGarment || options.size > 1024) {
    return absl::InvalidArgumentError("--size must be 28..1024 (the garments are 28x28), not " +
                                      std::to_string(options.size));
  }
  if (options.frames < 2 || options.frames > 256) {
    return absl::InvalidArgumentError("--frames must be 2..256 (a clip needs motion), not " +
                                      std::to_string(options.frames));
  }
  ASSIGN_OR_RETURN(const FashionMnist garments, LoadFashionMnist(options.split, options.source));
  if (garments.width != kGarment || garments.height != kGarment) {
    return absl::InvalidArgumentError(options.source + ": expected 28x28 Fashion-MNIST images");
  }
  SampleSpec spec;
  spec.modality = Modality::kVideo;
  spec.frames = options.frames;
  spec.height = spec.width = options.size;
  spec.channels = 1;
  ShardWriterOptions writer_options;
  writer_options.dir = options.out;
  writer_options.labels = true;
  writer_options.label_names = FashionClassNames();
  writer_options.source = "loom data moving-fashion --split " + options.split + " --size " +
                          std::to_string(options.size) + " --frames " +
                          std::to_string(options.frames) + " --seed " +
                          std::to_string(options.seed);
  OutputGuard guard(options.out);
  ASSIGN_OR_RETURN(auto writer, ShardWriter::Create(spec, writer_options));
  for (int64_t i = 0; i < options.count; ++i) {
    const ClipDescription clip = DescribeClip(options, garments, i);
    const std::vector<uint8_t> pixels = RenderClip(clip, garments, options.size, options.frames);
    RETURN_IF_ERROR(writer->Add(pixels.data(), ClipCaption(clip), clip.label));
  }
  ASSIGN_OR_RETURN(Manifest manifest, writer->Finish());
  guard.Commit();
  return manifest;
}

}  // namespace loom::data

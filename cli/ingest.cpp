// `loom data fashion-mnist|folder|shapes|moving-fashion`: the dataset makers. Each
// writes a dataset directory of shards (docs/shard-format.md) as a single process.
#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/ingest/fashion_mnist.h"
#include "data/ingest/folder.h"
#include "data/ingest/moving_fashion.h"
#include "data/ingest/shapes.h"

namespace loom::cli {
namespace {

absl::Status RunFashionMnist(const std::string& name, const std::vector<std::string>& argv) {
  std::string out;
  std::string source = data::kFashionMnistDir;
  int64_t limit = 0;
  ArgParser args(name, "Writes Fashion-MNIST as shards: OUT/train (60,000) and OUT/test (10,000),\n"
                       "captioned with the garment's name in several wordings, labels kept.");
  args.Flag("out", &out, "output directory").Required();
  args.Flag("source", &source, "directory of the IDX .gz files");
  args.Flag("limit", &limit, "keep only the first N samples of each split (0 = all)");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  return data::IngestFashionMnist(source, out, limit);
}

// Flags parse as int64; the makers check their ranges, so out-of-int values only
// need to stay out of range rather than wrap into it.
int Narrow(int64_t v) {
  return static_cast<int>(
      std::clamp<int64_t>(v, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
}

// The one line a dataset maker ends with, for scripts: {"out": ..., "samples": ...}.
void PrintSummary(const std::string& out, const data::Manifest& m, int64_t skipped = 0) {
  log::Info() << nlohmann::json{{"out", out},
                                {"samples", m.total},
                                {"shards", m.shards.size()},
                                {"skipped", skipped},
                                {"sample_shape", m.spec.dims()}}
                     .dump();
}

absl::Status RunShapes(const std::string& name, const std::vector<std::string>& argv) {
  data::ShapesOptions options;
  int64_t count = 0, size = 0, frames = 1, seed = 0;
  ArgParser args(name,
                 "Writes synthetic scenes of one or two coloured circles, squares and\n"
                 "triangles with exact captions (shape, colour, size, position); with\n"
                 "--frames T > 1, clips of moving objects captioned with their direction.\n"
                 "Labels are the first object's shape. The same flags give the same\n"
                 "samples.");
  args.Flag("out", &options.out, "output dataset directory").Required();
  args.Flag("count", &count, "number of samples").Required();
  args.Flag("size", &size, "side S of the S x S RGB samples (16..1024)").Required();
  args.Flag("frames", &frames, "frames per sample; 1 writes images");
  args.Flag("seed", &seed, "random seed");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  options.count = count;
  options.size = Narrow(size);
  options.frames = Narrow(frames);
  options.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(const data::Manifest m, data::WriteShapes(options));
  PrintSummary(options.out, m);
  return absl::OkStatus();
}

absl::Status RunMovingFashion(const std::string& name, const std::vector<std::string>& argv) {
  data::MovingFashionOptions options;
  int64_t count = 0, size = 0, frames = 0, seed = 0;
  ArgParser args(name,
                 "Writes video clips of a Fashion-MNIST garment moving left, right, up or\n"
                 "down on an S x S grayscale canvas, captioned with the item and the\n"
                 "direction; labels are the garment's class.");
  args.Flag("out", &options.out, "output dataset directory").Required();
  args.Flag("count", &count, "number of clips").Required();
  args.Flag("frames", &frames, "frames per clip (2..256)").Required();
  args.Flag("size", &size, "side S of the canvas (28..1024)").Required();
  args.Flag("seed", &seed, "random seed");
  args.Flag("split", &options.split, "Fashion-MNIST split the garments come from (train or test)");
  args.Flag("source", &options.source, "directory of the IDX .gz files");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  options.count = count;
  options.size = Narrow(size);
  options.frames = Narrow(frames);
  options.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(const data::Manifest m, data::WriteMovingFashion(options));
  PrintSummary(options.out, m);
  return absl::OkStatus();
}

absl::Status RunFolder(const std::string& name, const std::vector<std::string>& argv) {
  data::FolderOptions options;
  int64_t size = 0;
  std::string on_error = "fail";
  ArgParser args(name,
                 "Writes RGB shards from PNG/JPEG files listed in a JSONL file, one\n"
                 "{\"file\": \"rel/path.png\", \"caption\": \"...\"} per line (paths relative\n"
                 "to --src). Alpha is composited over white; each image is centre-cropped\n"
                 "to a square and resized to N x N.");
  args.Flag("src", &options.src, "directory the listed files are in").Required();
  args.Flag("captions", &options.captions, "the JSONL file").Required();
  args.Flag("out", &options.out, "output dataset directory").Required();
  args.Flag("size", &size, "side N of the N x N samples (8..4096)").Required();
  args.Flag("on-error", &on_error,
            "fail: stop at the first bad line; skip: warn, skip it and go on");
  args.Flag("max-skipped", &options.max_skipped,
            "with skip: fail anyway when more lines than this were skipped");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  if (on_error != "fail" && on_error != "skip") {
    return absl::InvalidArgumentError(name + ": --on-error is fail or skip, not '" + on_error +
                                      "'");
  }
  options.size = Narrow(size);
  options.skip_errors = on_error == "skip";
  ASSIGN_OR_RETURN(const data::FolderReport report, data::IngestFolder(options));
  PrintSummary(options.out, report.manifest, report.skipped);
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> IngestCommands() {
  return {
      {"data fashion-mnist", "Fashion-MNIST shards from Debian's dataset-fashion-mnist",
       RunFashionMnist},
      {"data shapes", "synthetic coloured shapes with exact captions, images or video", RunShapes},
      {"data moving-fashion", "video clips of moving Fashion-MNIST garments", RunMovingFashion},
      {"data folder", "shards from image files listed with captions in a JSONL file", RunFolder},
  };
}

}  // namespace loom::cli

// `loom data folder`: a dataset from image files (PNG, JPEG; grayscale, RGB or with
// alpha; any size) listed with captions in a JSONL file, one
// {"file": "rel/path.png", "caption": "..."} per line, paths relative to --src.
// Each image becomes RGB (alpha over white), centre-cropped to a square and resized.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "data/manifest.h"

namespace loom::data {

struct FolderOptions {
  std::string src;       // directory the listed paths are relative to; none may leave it
  std::string captions;  // the JSONL file
  std::string out;       // dataset directory
  int size = 0;          // samples are size x size x 3
  // Bad lines (unreadable JSON, missing or undecodable images, paths outside --src):
  // false stops at the first; true warns, skips it and goes on, failing at the end
  // only when more than `max_skipped` lines were skipped.
  bool skip_errors = false;
  int64_t max_skipped = 100;
};

struct FolderReport {
  Manifest manifest;
  int64_t samples = 0;
  int64_t skipped = 0;  // bad lines (each warned about); blank lines are not counted
};

// Writes the dataset. A failure leaves no manifest (and no shard files of this run),
// and its error names the JSONL file, the line number and the image file.
absl::StatusOr<FolderReport> IngestFolder(const FolderOptions& options);

}  // namespace loom::data

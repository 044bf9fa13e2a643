// File-system helpers: whole-file reads, and writes for outputs that must never be
// seen half-written.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loom {

// Writes `content` to `path` atomically: a temporary file in the same directory is
// written, fsynced and renamed over `path`, then the directory is fsynced.
absl::Status WriteFileAtomic(const std::string& path, const std::string& content);

// The bytes of the file at `path`; NotFound ("PATH: cannot open") when it cannot be read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// fsyncs a file or directory by path.
absl::Status SyncPath(const std::string& path);

}  // namespace loom

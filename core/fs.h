// File-system helpers for outputs that must never be seen half-written.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace loom {

// Writes `content` to `path` atomically: a temporary file in the same directory is
// written, fsynced and renamed over `path`, then the directory is fsynced.
absl::Status WriteFileAtomic(const std::string& path, const std::string& content);

// fsyncs a file or directory by path.
absl::Status SyncPath(const std::string& path);

}  // namespace loom

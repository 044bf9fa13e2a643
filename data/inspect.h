// `loom data inspect`: checks a dataset directory against its manifest, the shard
// schema and the checksums, reading every sample; the first defect is an error that
// names the file (and sample).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::data {

struct InspectReport {
  int64_t datasets = 0;
  int64_t shards = 0;
  int64_t samples = 0;
  int64_t bytes = 0;
};

// PATH is a dataset directory (with manifest.json) or a directory of them (train/, test/).
absl::StatusOr<InspectReport> Inspect(const std::string& path);

// Checks one dataset directory; adds to `report`.
absl::Status InspectDataset(const std::string& dir, InspectReport* report);

}  // namespace loom::data

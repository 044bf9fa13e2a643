// `loom bench loader`: the loader's throughput next to a bare single-thread HDF5 read of
// the same samples in the same order, and a sequential read of the shard files' bytes,
// all measured in one run on warm page cache.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::bench {

struct LoaderBenchOptions {
  std::string data;                      // dataset directory
  std::vector<int> workers = {0, 1, 2};  // loader worker counts to measure
  int64_t batch = 256;
  int64_t samples = 20000;               // samples per measurement (whole batches)
  int image_size = 0;                    // 0: as stored
  int repeats = 3;                       // best of
};

// Runs the measurements; returns the report as one JSON object (a string).
absl::StatusOr<std::string> RunLoaderBench(const LoaderBenchOptions& options);

}  // namespace loom::bench

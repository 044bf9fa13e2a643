// `loom bench comm` (under mpirun): all-reduce, reduce-scatter and all-gather through
// loom's process group next to the raw MPI call on the same buffers, 1 KB to 256 MB,
// with algorithm and bus bandwidth as nccl-tests define them; then the DDP step
// overhead: a training step with gradient all-reduce (overlapped with backward, and
// not) over the same step without communication.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::bench {

struct CommBenchOptions {
  int64_t min_bytes = 1 << 10;
  int64_t max_bytes = 256ll << 20;
  double seconds_per_point = 0.2;  // time budget per (op, size, implementation)
  int model_width = 1024;          // DDP step model: 4 linear layers of this width
  int batch = 32;                  // per rank
  int steps = 10;
};

// Returns the report as one JSON object (a string); call on every rank.
absl::StatusOr<std::string> RunCommBench(const CommBenchOptions& options);

}  // namespace loom::bench

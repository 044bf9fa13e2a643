// `loom bench step --config FILE`: training steps per second of the experiment's stage on
// one batch of its data (read once, reused), the FLOP/s they achieve where the stage
// counts its FLOPs (forward x 3 for forward + backward), next to this machine's float32
// matmul FLOP/s measured in the same run. The step is the trainer's: every trainable
// with the configured dist.strategy (under mpirun each rank takes batch / world),
// clipping and AdamW; train.precision=bf16 measures autocast. The matmul peak is
// measured at one rank only (ranks would contend for the same cores).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::bench {

struct StepBenchOptions {
  std::string config;
  std::vector<std::string> overrides;
  int steps = 10;
  int64_t batch = 0;  // per step; 0 = the config's global batch
};

absl::StatusOr<std::string> RunStepBench(const StepBenchOptions& options);

}  // namespace loom::bench

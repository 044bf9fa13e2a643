// Commands that write datasets run as one process: under mpirun they refuse to start.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "dist/runtime.h"

namespace loom::cli {

inline absl::Status SingleProcess(const std::string& name) {
  if (dist::Runtime::Info().world == 1) return absl::OkStatus();
  return absl::FailedPreconditionError(name + " runs as one process; start it without mpirun");
}

}  // namespace loom::cli

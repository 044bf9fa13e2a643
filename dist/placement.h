// Where this process computes: intra-op threads (cores / ranks on this node) and,
// where GPUs exist, one CUDA device per local rank.
#pragma once

#include <string>

#include "dist/runtime.h"

namespace loom::dist {

struct Placement {
  int threads = 1;        // torch intra-op threads
  int cores = 1;          // logical CPUs of this node
  int cpus_allowed = 1;   // CPUs this process may run on (launcher binding)
  bool cuda = false;
  int cuda_devices = 0;
  int device = -1;        // CUDA device index, -1 for CPU
};

// Sets torch's thread count and CUDA device for this rank and returns the choice.
// LOOM_THREADS in the environment overrides the thread count.
Placement PlaceProcess(const ProcessInfo& info);

// NCCL's version ("2.30.7") when loom was compiled with NCCL, else "".
std::string NcclVersion();

}  // namespace loom::dist

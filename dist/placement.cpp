// Thread and device placement of a rank (see placement.h).
#include "dist/placement.h"

#include <sched.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#if LOOM_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace loom::dist {

Placement PlaceProcess(const ProcessInfo& info) {
  Placement p;
  p.cores = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t set;
  CPU_ZERO(&set);
  p.cpus_allowed = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : p.cores;
  // Share the node's cores among its ranks, but never beyond what the launcher's
  // binding lets this process use.
  p.threads = std::max(1, std::min(p.cpus_allowed, p.cores / std::max(1, info.local_world)));
  if (const char* env = std::getenv("LOOM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) p.threads = n;
  }
  torch::set_num_threads(p.threads);

  p.cuda = torch::cuda::is_available();
  p.cuda_devices = p.cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
#if LOOM_HAVE_CUDA
  if (p.cuda_devices > 0) {
    p.device = info.local_rank % p.cuda_devices;
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(p.device));
  }
#endif
  return p;
}

}  // namespace loom::dist

// NCCL's runtime version, reported by `loom info` (see placement.h).
#include "dist/placement.h"

#if LOOM_HAVE_NCCL
#include <nccl.h>
#endif

namespace loom::dist {

std::string NcclVersion() {
#if LOOM_HAVE_NCCL
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." +
         std::to_string(code % 100);
#else
  return "";
#endif
}

}  // namespace loom::dist

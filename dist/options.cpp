// Schema of the `dist:` config section (see options.h).
#include "dist/options.h"

namespace loom::dist {

void DistOptions::Describe(config::Fields<DistOptions>& f) {
  using O = DistOptions;
  f.Add("strategy", &O::strategy,
        "ddp (replicated), zero1 (sharded optimizer), zero2 (+ gradients), zero3 (+ parameters)")
      .Rule(config::OneOf({"ddp", "zero1", "zero2", "zero3"}));
  f.Add("backend", &O::backend, "collectives: nccl for CUDA tensors, mpi for CPU; auto picks")
      .Rule(config::OneOf({"auto", "mpi", "nccl"}));
  f.Add("bucket_mb", &O::bucket_mb, "gradient bucket size for overlapped all-reduce, MiB")
      .Rule(config::Between(0.01, 4096));
  f.Add("overlap", &O::overlap,
        "launch bucket reductions during backward; false: after it (debugging, measurement)");
  f.Add("timeout_s", &O::timeout_s, "a collective running longer than this ends the job")
      .Rule(config::Between(1, 86400));
}

}  // namespace loom::dist

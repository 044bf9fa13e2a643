// `loom bench ...`: measurements with their baselines; the last stdout line is JSON.
#include "bench/comm_bench.h"
#include "bench/loader_bench.h"
#include "bench/step_bench.h"
#include "cli/command.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"

namespace loom::cli {
namespace {

absl::Status RunLoaderBench(const std::string& name, const std::vector<std::string>& argv) {
  bench::LoaderBenchOptions o;
  std::vector<std::string> workers;
  int64_t image_size = 0, repeats = o.repeats;
  ArgParser args(name, "Loader samples/s and MB/s next to a bare single-thread HDF5 read of the\n"
                       "same samples in the same order, and a sequential read of the files.");
  args.Flag("data", &o.data, "dataset directory").Required();
  args.Flag("workers", &workers, "loader worker threads to measure (default: 0, 1 and 2)");
  args.Flag("batch", &o.batch, "samples per batch");
  args.Flag("samples", &o.samples, "samples per measurement");
  args.Flag("image-size", &image_size, "resize to this size as training would (0: as stored)");
  args.Flag("repeats", &repeats, "measurements per figure; the best is reported");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (!workers.empty()) {
    o.workers.clear();
    for (const std::string& w : workers) {
      char* end = nullptr;
      const long v = std::strtol(w.c_str(), &end, 10);
      if (*end != '\0' || v < 0 || v > 64) {
        return absl::InvalidArgumentError(name + ": --workers expects 0..64, got '" + w + "'");
      }
      o.workers.push_back(static_cast<int>(v));
    }
  }
  o.image_size = static_cast<int>(image_size);
  o.repeats = static_cast<int>(std::max<int64_t>(1, repeats));
  ASSIGN_OR_RETURN(std::string report, bench::RunLoaderBench(o));
  log::Info() << report;
  return absl::OkStatus();
}

absl::Status RunCommBench(const std::string& name, const std::vector<std::string>& argv) {
  bench::CommBenchOptions o;
  int64_t width = o.model_width, batch = o.batch, steps = o.steps;
  ArgParser args(name, "Under mpirun: all-reduce, reduce-scatter and all-gather through loom next to\n"
                       "raw MPI on the same buffers (algorithm and bus bandwidth as nccl-tests\n"
                       "define them), then the DDP step overhead with and without overlap.");
  args.Flag("min-bytes", &o.min_bytes, "smallest buffer");
  args.Flag("max-bytes", &o.max_bytes, "largest buffer (sizes grow by 4x)");
  args.Flag("seconds", &o.seconds_per_point, "time budget per measurement");
  args.Flag("width", &width, "width of the 4-layer model of the DDP step");
  args.Flag("batch", &batch, "per-rank batch of the DDP step");
  args.Flag("steps", &steps, "DDP steps measured");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (o.min_bytes < 4 || o.max_bytes < o.min_bytes || width < 1 || batch < 1 || steps < 1) {
    return absl::InvalidArgumentError(name + ": sizes, width, batch and steps must be positive");
  }
  o.model_width = static_cast<int>(width);
  o.batch = static_cast<int>(batch);
  o.steps = static_cast<int>(steps);
  ASSIGN_OR_RETURN(std::string report, bench::RunCommBench(o));
  log::Info() << report;
  return absl::OkStatus();
}

absl::Status RunStepBench(const std::string& name, const std::vector<std::string>& argv) {
  bench::StepBenchOptions o;
  int64_t steps = o.steps;
  ArgParser args(name, "Training steps/s and FLOP/s of an experiment's model on synthetic batches,\n"
                       "next to this machine's float32 matmul FLOP/s measured in the same run.");
  args.Flag("config", &o.config, "experiment YAML").Required();
  args.Rest("KEY=VALUE", &o.overrides, "config overrides");
  args.Flag("steps", &steps, "steps measured");
  args.Flag("batch", &o.batch, "samples per step (0: the config's global batch)");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (steps < 1 || o.batch < 0) return absl::InvalidArgumentError(name + ": --steps >= 1 and --batch >= 0");
  o.steps = static_cast<int>(steps);
  ASSIGN_OR_RETURN(std::string report, bench::RunStepBench(o));
  log::Info() << report;
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> BenchCommands() {
  return {{"bench loader", "loader throughput against bare HDF5 and sequential reads", RunLoaderBench},
          {"bench comm", "collective bandwidth against raw MPI; DDP overhead (under mpirun)",
           RunCommBench},
          {"bench step", "training step throughput and FLOP/s against matmul peak", RunStepBench}};
}

}  // namespace loom::cli

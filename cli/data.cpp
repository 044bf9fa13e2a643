// `loom data ...`: dataset ingest and inspection (single process; writes shards).
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/ingest/fashion_mnist.h"
#include "data/inspect.h"
#include "dist/runtime.h"

namespace loom::cli {
namespace {

absl::Status SingleProcess(const std::string& name) {
  if (dist::Runtime::Info().world == 1) return absl::OkStatus();
  return absl::FailedPreconditionError(name + " runs as one process; start it without mpirun");
}

absl::Status RunFashionMnist(const std::string& name, const std::vector<std::string>& argv) {
  std::string out;
  std::string source = data::kFashionMnistDir;
  int64_t limit = 0;
  ArgParser args(name, "Writes Fashion-MNIST as shards: OUT/train (60,000) and OUT/test (10,000),\n"
                       "captioned with the garment's name in several wordings, labels kept.");
  args.Flag("out", &out, "output directory").Required();
  args.Flag("source", &source, "directory of the IDX .gz files");
  args.Flag("limit", &limit, "keep only the first N samples of each split (0 = all)");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  return data::IngestFashionMnist(source, out, limit);
}

absl::Status RunInspect(const std::string& name, const std::vector<std::string>& argv) {
  std::string path;
  ArgParser args(name, "Checks every shard of a dataset directory (or of each dataset directory\n"
                       "inside PATH) against the manifest, the schema and the checksums, reading\n"
                       "every sample. Exits non-zero naming the first defective file.");
  args.Positional("PATH", &path, "dataset directory, or a directory of them");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  ASSIGN_OR_RETURN(data::InspectReport report, data::Inspect(path));
  log::Info() << path << ": ok, " << report.datasets << " dataset(s), " << report.shards
              << " shard(s), " << report.samples << " samples, " << report.bytes << " bytes";
  nlohmann::json j = {{"path", path},          {"ok", true},
                      {"datasets", report.datasets}, {"shards", report.shards},
                      {"samples", report.samples},   {"bytes", report.bytes}};
  log::Info() << j.dump();
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> DataCommands() {
  return {
      {"data fashion-mnist", "Fashion-MNIST shards from Debian's dataset-fashion-mnist",
       RunFashionMnist},
      {"data inspect", "check every shard against manifest, schema and checksums", RunInspect},
  };
}

}  // namespace loom::cli

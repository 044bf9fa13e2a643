// `loom data inspect` and `loom data tokenizer` (single process).
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/inspect.h"
#include "dist/runtime.h"

namespace loom::cli {
namespace {

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
      {"data inspect", "check every shard against manifest, schema and checksums", RunInspect},
  };
}

}  // namespace loom::cli

// `loom data fashion-mnist|folder|shapes|moving-fashion`: the dataset makers. Each
// writes a dataset directory of shards (docs/shard-format.md) as a single process.
#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/status.h"
#include "data/ingest/fashion_mnist.h"

namespace loom::cli {
namespace {

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

}  // namespace

std::vector<Command> IngestCommands() {
  return {
      {"data fashion-mnist", "Fashion-MNIST shards from Debian's dataset-fashion-mnist",
       RunFashionMnist},
  };
}

}  // namespace loom::cli

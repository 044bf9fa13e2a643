// `loom train CONFIG [key=value ...]`: checks the experiment config and trains it (see
// train/trainer.h). With --print-config prints the resolved config; with --keys lists
// every key (with --kind K, the keys of stage kind K).
#include <cstdio>

#include "cli/command.h"
#include "core/args.h"
#include "core/config/load.h"
#include "core/log.h"
#include "core/status.h"
#include "stages/registry.h"
#include "train/experiment.h"
#include "train/trainer.h"

namespace loom::cli {
namespace {

absl::Status RunTrain(const std::string& name, const std::vector<std::string>& argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  bool print_config = false;
  bool keys = false;
  ArgParser args(name,
                 "Trains the experiment of a YAML config, alone or under mpirun/srun; resumes from\n"
                 "the newest complete checkpoint of its run directory.");
  args.Positional("CONFIG", &config_path, "experiment YAML (see configs/ and docs/config.md)");
  args.Rest("KEY=VALUE", &overrides, "overrides with dotted keys, e.g. optim.lr=1e-4 dist.strategy=zero2");
  args.Flag("print-config", &print_config, "print the resolved config (file + overrides) and exit");
  std::string kind;
  args.Flag("keys", &keys, "list every config key with its default and doc, and exit");
  args.Flag("kind", &kind, "with --keys: list the keys of this stage kind too");
  // --keys needs no CONFIG: handle it before the parser asks for one.
  if (std::find(argv.begin(), argv.end(), "--keys") != argv.end()) {
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "--kind") kind = argv[i + 1];
      if (argv[i].rfind("--kind=", 0) == 0) kind = argv[i].substr(7);
    }
    if (argv.back() == "--kind") return absl::InvalidArgumentError(name + ": --kind needs a stage kind");
    train::ExperimentOptions defaults;
    if (!kind.empty()) {
      ASSIGN_OR_RETURN(const stages::StageKind* k, stages::FindStageKind(kind));
      defaults.stage.Reset(k->options);
    }
    if (log::Rank() == 0) {
      for (const auto& row : config::KeyTable<train::ExperimentOptions>(defaults)) {
        std::printf("%-34s %-14s %s\n", row[0].c_str(), row[1].c_str(), row[2].c_str());
      }
      if (kind.empty()) std::printf("\n'loom train --keys --kind K' lists the stage.* keys of kind K.\n");
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();

  ASSIGN_OR_RETURN(train::ExperimentOptions options,
                   config::LoadFile<train::ExperimentOptions>(config_path, overrides));
  if (print_config) {
    if (log::Rank() == 0) std::fputs(config::ToYaml(options).c_str(), stdout);
    return absl::OkStatus();
  }
  return train::Train(options, config::ToYaml(options));
}

}  // namespace

Command TrainCommand() {
  return {"train", "train an experiment config (alone or under mpirun/srun)", RunTrain};
}

}  // namespace loom::cli

// The subcommands of `loom`: each registers a path ("data shapes"), a one-line summary
// and a function of its arguments. main dispatches on the longest matching path.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom::cli {

struct Command {
  std::string path;     // words after `loom`: "train", "data fashion-mnist"
  std::string summary;  // one line for `loom --help`
  // Runs with the arguments after the path; `name` is "loom <path>" for messages.
  std::function<absl::Status(const std::string& name, const std::vector<std::string>& args)> run;
};

// Every command, in the order `loom --help` lists them.
std::vector<Command> AllCommands();

// One factory per file under cli/.
Command InfoCommand();
Command TrainCommand();
Command SampleCommand();
Command ExportCommand();
Command CascadeExportCommand();         // cli/export.cpp
Command SuperResolutionEvalCommand();   // cli/eval_upsampling.cpp
std::vector<Command> EvalCommands();    // cli/eval.cpp: the judge and prompt accuracy
std::vector<Command> DataCommands();    // cli/data.cpp: inspect, tokenizer
std::vector<Command> IngestCommands();  // cli/ingest.cpp: dataset makers
std::vector<Command> BenchCommands();   // cli/bench.cpp: measurements
std::vector<Command> ImportCommands();  // cli/import.cpp: pretrained models from other formats
// Commands whose implementation is tracked by an open issue: they say so and exit 2.
std::vector<Command> PendingCommands();

// Runs `loom` with argv[1..]; returns the process exit code.
int Dispatch(const std::vector<std::string>& args);

}  // namespace loom::cli

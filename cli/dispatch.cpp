// Subcommand dispatch and top-level help of `loom` (see command.h).
#include <cstdio>
#include <exception>
#include <set>

#include "cli/command.h"
#include "core/log.h"
#include "core/status.h"
#include "core/strings.h"

namespace loom::cli {
namespace {

constexpr char kVersion[] = "0.1.0";

bool StartsWith(const std::vector<std::string>& words, const std::vector<std::string>& prefix) {
  if (prefix.size() > words.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (words[i] != prefix[i]) return false;
  }
  return true;
}

std::vector<std::string> Words(const std::string& path) {
  std::vector<std::string> words;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t space = path.find(' ', start);
    words.push_back(path.substr(start, space - start));
    if (space == std::string::npos) break;
    start = space + 1;
  }
  return words;
}

// Help for `loom` or for a group such as `loom data`.
std::string Help(const std::vector<Command>& commands, const std::string& group) {
  std::string out = group.empty() ? "usage: loom COMMAND [ARGS] [--help]\n\n"
                                    "loom trains text-to-image and text-to-video diffusion models "
                                    "on many processes and GPUs.\nRun it alone or under mpirun/srun.\n"
                                  : "usage: loom " + group + " COMMAND [ARGS] [--help]\n";
  out += "\ncommands:\n";
  for (const Command& c : commands) {
    if (!group.empty() && c.path.rfind(group + " ", 0) != 0) continue;
    char line[512];
    std::snprintf(line, sizeof(line), "  %-22s %s\n", c.path.c_str(), c.summary.c_str());
    out += line;
  }
  if (group.empty()) out += "\n'loom COMMAND --help' describes a command; 'loom --version' prints the version.\n";
  return out;
}

int Fail(const absl::Status& status) {
  log::Error() << MessageOf(status);
  return ExitCodeFor(status);
}

}  // namespace

std::vector<Command> AllCommands() {
  std::vector<Command> all = {InfoCommand(), TrainCommand(), SampleCommand(), ExportCommand(), CascadeExportCommand()};
  for (Command& c : EvalCommands()) all.push_back(std::move(c));
  all.push_back(SuperResolutionEvalCommand());
  for (Command& c : IngestCommands()) all.push_back(std::move(c));
  for (Command& c : DataCommands()) all.push_back(std::move(c));
  for (Command& c : ImportCommands()) all.push_back(std::move(c));
  for (Command& c : BenchCommands()) all.push_back(std::move(c));
  for (Command& c : PendingCommands()) all.push_back(std::move(c));
  return all;
}

int Dispatch(const std::vector<std::string>& args) {
  const std::vector<Command> commands = AllCommands();
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    if (log::Rank() == 0) std::fputs(Help(commands, "").c_str(), stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    if (log::Rank() == 0) std::printf("loom %s\n", kVersion);
    return 0;
  }

  // The longest command path that prefixes the arguments.
  const Command* match = nullptr;
  size_t match_words = 0;
  std::set<std::string> groups;
  std::vector<std::string> first_words;
  for (const Command& c : commands) {
    const std::vector<std::string> words = Words(c.path);
    first_words.push_back(words[0]);
    if (words.size() > 1) groups.insert(words[0]);
    if (StartsWith(args, words) && words.size() > match_words) {
      match = &c;
      match_words = words.size();
    }
  }
  if (match == nullptr) {
    if (groups.count(args[0])) {
      const bool help = args.size() > 1 && (args[1] == "--help" || args[1] == "-h");
      if (help) {
        if (log::Rank() == 0) std::fputs(Help(commands, args[0]).c_str(), stdout);
        return 0;
      }
      std::vector<std::string> subs;
      for (const Command& c : commands) {
        const std::vector<std::string> words = Words(c.path);
        if (words[0] == args[0] && words.size() > 1) subs.push_back(words[1]);
      }
      const std::string what = args.size() > 1 ? "unknown command 'loom " + args[0] + " " +
                                                     args[1] + "'" + DidYouMean(args[1], subs)
                                               : "'loom " + args[0] + "' needs a command";
      return Fail(absl::InvalidArgumentError(what + "; one of: " + Join(subs, ", ") +
                                             " (see 'loom " + args[0] + " --help')"));
    }
    return Fail(absl::InvalidArgumentError("unknown command '" + args[0] + "'" +
                                           DidYouMean(args[0], first_words) +
                                           " (see 'loom --help')"));
  }
  const std::vector<std::string> rest(args.begin() + static_cast<long>(match_words), args.end());
  try {
    const absl::Status status = match->run("loom " + match->path, rest);
    return status.ok() ? 0 : Fail(status);
  } catch (const std::exception& e) {
    log::Error() << "loom " << match->path << " failed: " << e.what();
    return 1;
  }
}

}  // namespace loom::cli

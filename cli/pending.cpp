// Subcommands of the CLI contract (../DESIGN.md) that are not built yet: each says
// which issue builds it and exits 2, so scripts fail loudly instead of silently.
#include <cstdio>

#include "cli/command.h"

namespace loom::cli {
namespace {

Command Pending(std::string path, std::string usage, std::string summary, int issue) {
  Command c;
  c.path = path;
  c.summary = summary + " [not built yet]";
  c.run = [usage, summary, issue](const std::string& name, const std::vector<std::string>& args) {
    for (const std::string& a : args) {
      if (a == "--help" || a == "-h") {
        std::printf("usage: %s %s\n\n%s\n\nNot built yet: tracked in issue #%d.\n", name.c_str(),
                    usage.c_str(), summary.c_str(), issue);
        return absl::OkStatus();
      }
    }
    return absl::UnimplementedError(name + " is not built yet (tracked in issue #" +
                                    std::to_string(issue) + ")");
  };
  return c;
}

}  // namespace

std::vector<Command> PendingCommands() {
  return {
      Pending("bench checkpoint", "--config FILE", "checkpoint save and load time", 5),
  };
}

}  // namespace loom::cli

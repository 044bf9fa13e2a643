// loom: the one program. Starts the process's place in the job (MPI), runs the
// subcommand, and turns a failure on any rank into a prompt end of the whole job.
#include <string>
#include <vector>

#include "cli/command.h"   // defines: Dispatch
#include "core/log.h"      // defines: log::Error
#include "core/status.h"   // defines: MessageOf
#include "dist/runtime.h"  // defines: Runtime (MPI init, rank, job-wide abort)

int main(int argc, char** argv) {
  if (absl::Status s = loom::dist::Runtime::Init(&argc, &argv); !s.ok()) {
    loom::log::Error() << loom::MessageOf(s);
    return 1;
  }
  const std::vector<std::string> args(argv + 1, argv + argc);
  const int code = loom::cli::Dispatch(args);
  if (code != 0 && loom::dist::Runtime::Info().world > 1) {
    // Other ranks may be waiting in a collective for this one: end them all now.
    loom::dist::Runtime::Abort(code);
  }
  loom::dist::Runtime::Finalize();
  return code;
}

// The process's place in the job. Runtime::Init starts MPI (alone, the job is one
// rank; under mpirun or srun, MPI supplies rank, world and the ranks on this node),
// tells the logger, and makes any rank's fatal error end the whole job promptly.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom::dist {

struct ProcessInfo {
  int rank = 0;
  int world = 1;
  int local_rank = 0;   // rank among the processes on this node
  int local_world = 1;  // processes on this node
  int nodes = 1;
  std::string hostname;
};

class Runtime {
 public:
  // Call once, first thing in main. Also installs the terminate handler that turns an
  // uncaught exception on any rank into a job-wide abort.
  static absl::Status Init(int* argc, char*** argv);
  static bool Initialized();
  static const ProcessInfo& Info();

  // Finalizes MPI after a successful run (all ranks must call it).
  static void Finalize();

  // "Open MPI v4.1.4, ..." (first line of MPI_Get_library_version).
  static std::string MpiLibraryVersion();

  // Ends this rank and, when the job has other ranks, the whole job (MPI_Abort), so no
  // rank is left waiting in a collective.
  [[noreturn]] static void Abort(int exit_code);
};

// Collects one string from every rank on rank 0 (in rank order); other ranks get {}.
// A job-start helper for reports such as `loom info`, not a data path.
std::vector<std::string> GatherToRoot(const std::string& text);

// Prints "[rank r] error: <message>" on stderr and ends the whole job with `exit_code`.
[[noreturn]] void FatalError(const std::string& message, int exit_code = 1);

}  // namespace loom::dist

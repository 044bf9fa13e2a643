// MPI start-up, rank discovery and job-wide abort (see runtime.h).
#include "dist/runtime.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <vector>

#include "core/log.h"

namespace loom::dist {
namespace {

ProcessInfo g_info;
bool g_initialized = false;
bool g_mpi_owned = false;  // MPI was started here, so it is finalized here

// An uncaught exception on any rank: report it with the rank, then take the job down.
void OnTerminate() {
  std::string what = "uncaught exception of unknown type";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = std::string("uncaught exception: ") + ex.what();
    } catch (...) {
    }
  } else {
    what = "std::terminate called";
  }
  FatalError(what, 1);
}

std::string Hostname() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

}  // namespace

absl::Status Runtime::Init(int* argc, char*** argv) {
  if (g_initialized) return absl::OkStatus();
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    // Multiple: loader threads and the collective watchdog live beside the main thread.
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      return absl::UnavailableError("MPI_Init_thread failed; is Open MPI installed (launch/setup.sh)?");
    }
    g_mpi_owned = true;
  }
  // Errors in MPI calls come back as codes instead of aborting inside the library, so
  // loom can report them with context.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

  ProcessInfo info;
  MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info.world);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &info.local_rank);
  MPI_Comm_size(local, &info.local_world);
  // Nodes: the number of distinct "local rank 0" processes.
  int leader = info.local_rank == 0 ? 1 : 0;
  MPI_Allreduce(&leader, &info.nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&local);
  info.hostname = Hostname();

  g_info = info;
  g_initialized = true;
  log::SetRank(info.rank, info.world);
  std::set_terminate(OnTerminate);
  return absl::OkStatus();
}

bool Runtime::Initialized() { return g_initialized; }

const ProcessInfo& Runtime::Info() { return g_info; }

void Runtime::Finalize() {
  if (!g_initialized) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_mpi_owned && !finalized) MPI_Finalize();
  g_initialized = false;
}

std::string Runtime::MpiLibraryVersion() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int length = 0;
  MPI_Get_library_version(version, &length);
  std::string text(version, std::max(0, length));
  // The first clause ("Open MPI v4.1.4"); the rest is packaging detail.
  if (const size_t end = text.find_first_of(std::string(",\r\n\0", 4)); end != std::string::npos) {
    text.resize(end);
  }
  while (!text.empty() && (text.back() == ',' || text.back() == ' ')) text.pop_back();
  return text;
}

void Runtime::Abort(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (g_initialized && g_info.world > 1) {
    // The launcher forwards each rank's output asynchronously; MPI_Abort kills every
    // rank at once and would drop the message this rank just wrote. A short grace
    // lets it reach the user first.
    usleep(300 * 1000);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
  std::_Exit(exit_code);
}

std::vector<std::string> GatherToRoot(const std::string& text) {
  const ProcessInfo& info = g_info;
  if (!g_initialized || info.world == 1) return {text};
  int length = static_cast<int>(text.size());
  std::vector<int> lengths(info.rank == 0 ? info.world : 0);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(lengths.size(), 0);
  int total = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    offsets[i] = total;
    total += lengths[i];
  }
  std::vector<char> buffer(std::max(total, 1));
  MPI_Gatherv(text.data(), length, MPI_CHAR, buffer.data(), lengths.data(), offsets.data(),
              MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> out;
  for (size_t i = 0; i < lengths.size(); ++i) out.emplace_back(buffer.data() + offsets[i], lengths[i]);
  return out;
}

void FatalError(const std::string& message, int exit_code) {
  log::Error() << message;
  Runtime::Abort(exit_code);
}

}  // namespace loom::dist

// `loom info`: versions of the stack (LibTorch, CUDA, NCCL, MPI, HDF5) and this rank's
// place in the job. The last lines on stdout are one JSON object per rank.
#include <H5public.h>
#include <torch/torch.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/args.h"
#include "core/status.h"
#include "dist/placement.h"
#include "dist/runtime.h"

namespace loom::cli {
namespace {

std::string Hdf5Version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

absl::Status RunInfo(const std::string& name, const std::vector<std::string>& argv) {
  ArgParser args(name, "Prints the versions of LibTorch, CUDA, NCCL, MPI and HDF5 and each rank's "
                       "place in the job;\nthe last stdout lines are one JSON object per rank.");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();

  const dist::ProcessInfo& p = dist::Runtime::Info();
  const dist::Placement place = dist::PlaceProcess(p);
  nlohmann::json j;
  j["rank"] = p.rank;
  j["world"] = p.world;
  j["local_rank"] = p.local_rank;
  j["local_world"] = p.local_world;
  j["nodes"] = p.nodes;
  j["hostname"] = p.hostname;
  j["libtorch"] = TORCH_VERSION;
  j["cuda_available"] = place.cuda;
  j["cuda_devices"] = place.cuda_devices;
  j["device"] = place.device >= 0 ? "cuda:" + std::to_string(place.device) : "cpu";
  j["nccl_compiled"] = !dist::NcclVersion().empty();
  j["nccl_version"] = dist::NcclVersion();
  j["mpi"] = dist::Runtime::MpiLibraryVersion();
  j["hdf5"] = Hdf5Version();
  j["threads"] = place.threads;
  j["cores"] = place.cores;

  const std::vector<std::string> lines = dist::GatherToRoot(j.dump());
  if (p.rank != 0) return absl::OkStatus();
  std::printf("loom       %s\n", "0.1.0");
  std::printf("LibTorch   %s\n", TORCH_VERSION);
  std::printf("CUDA       %s\n", place.cuda ? ("available, " + std::to_string(place.cuda_devices) +
                                              " device(s)").c_str()
                                           : "not available (CPU only)");
  std::printf("NCCL       %s\n", dist::NcclVersion().empty()
                                     ? "not compiled in"
                                     : ("compiled in, " + dist::NcclVersion()).c_str());
  std::printf("MPI        %s\n", dist::Runtime::MpiLibraryVersion().c_str());
  std::printf("HDF5       %s\n", Hdf5Version().c_str());
  std::printf("job        %d rank(s) on %d node(s); %d intra-op thread(s) per rank on %d core(s)\n",
              p.world, p.nodes, place.threads, place.cores);
  for (const std::string& line : lines) std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace

Command InfoCommand() {
  return {"info", "versions of LibTorch, CUDA, NCCL, MPI, HDF5; rank and world", RunInfo};
}

}  // namespace loom::cli

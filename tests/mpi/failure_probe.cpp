// A job in which one rank fails while the others wait in a collective that can only
// finish if the failing rank joins: without a job-wide abort it would hang forever.
//   failure_probe MODE FAILING_RANK   MODE: throw | fatal | signal | stuck | ok
// In `stuck` the failing rank sleeps instead of joining an all-reduce of loom's process
// group; the others' watchdog (timeout 2 s) must end the job naming the operation.
#include <mpi.h>

#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "dist/process_group.h"
#include "dist/runtime.h"

int main(int argc, char** argv) {
  if (absl::Status s = loom::dist::Runtime::Init(&argc, &argv); !s.ok()) return 1;
  const std::string mode = argc > 1 ? argv[1] : "ok";
  const int failing = argc > 2 ? std::stoi(argv[2]) : 1;
  const int rank = loom::dist::Runtime::Info().rank;
  if (mode == "stuck") {
    auto group = loom::dist::CreateMpiGroup(/*timeout_s=*/2);
    group->SetStep(7);
    if (rank == failing) std::this_thread::sleep_for(std::chrono::seconds(100));
    torch::Tensor x = torch::ones({1000});
    (void)group->AllReduce(x, loom::dist::ReduceOp::kSum)->Wait();
    std::printf("rank %d passed the all-reduce\n", rank);
  }
  if (rank == failing) {
    if (mode == "throw") throw std::runtime_error("probe failure on purpose");
    if (mode == "fatal") loom::dist::FatalError("probe fatal error on purpose", 3);
    if (mode == "signal") std::raise(SIGKILL);
  }
  // Everyone else blocks here until the failing rank arrives (it never does).
  MPI_Barrier(MPI_COMM_WORLD);
  std::printf("rank %d passed the barrier\n", rank);
  loom::dist::Runtime::Finalize();
  return 0;
}

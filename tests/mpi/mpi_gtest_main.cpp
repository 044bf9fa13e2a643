// GoogleTest main for suites run under mpirun: every rank runs every test, rank 0
// prints, and the process fails if the test failed on any rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include "dist/runtime.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (absl::Status s = loom::dist::Runtime::Init(&argc, &argv); !s.ok()) return 1;
  if (loom::dist::Runtime::Info().rank != 0) {
    // Failures still print on the rank that has them; the rest is rank 0's to say.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  loom::dist::Runtime::Finalize();
  return any_failed;
}

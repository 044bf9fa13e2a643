// One rank's failure ends the whole job: the probe's other ranks wait in a barrier that
// can never complete, so the job ends only if the failure takes them down. `timeout`
// is only the hang detector (exit 124): the assertions are on how the job ended.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/subprocess.h"

namespace loom {
namespace {

testing::Result RunProbe(int ranks, const std::string& mode, int failing_rank) {
  return testing::Run("timeout -k 5 60 " + std::string(LOOM_MPIRUN) + " -np " +
                      std::to_string(ranks) + " " + LOOM_FAILURE_PROBE + " " + mode + " " +
                      std::to_string(failing_rank));
}

class FailureTest : public ::testing::TestWithParam<int> {};

TEST_P(FailureTest, HealthyJobPassesTheBarrier) {
  const int np = GetParam();
  const testing::Result r = RunProbe(np, "ok", 1);
  ASSERT_EQ(r.code, 0) << r.err;
  for (int rank = 0; rank < np; ++rank) {
    EXPECT_NE(r.out.find("rank " + std::to_string(rank) + " passed the barrier"), std::string::npos);
  }
}

TEST_P(FailureTest, ThrowingRankEndsTheJobWithItsMessage) {
  const testing::Result r = RunProbe(GetParam(), "throw", 1);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, 124) << "the job hung until the hang detector ended it";
  EXPECT_NE(r.err.find("[rank 1] error: uncaught exception: probe failure on purpose"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("passed the barrier"), std::string::npos);
}

TEST_P(FailureTest, FatalErrorEndsTheJobWithItsCode) {
  const int last = GetParam() - 1;
  const testing::Result r = RunProbe(GetParam(), "fatal", last);
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("[rank " + std::to_string(last) + "] error: probe fatal error on purpose"),
            std::string::npos)
      << r.err;
}

TEST_P(FailureTest, RankKilledBySignalEndsTheJob) {
  const testing::Result r = RunProbe(GetParam(), "signal", 0);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, 124) << "the job hung until the hang detector ended it";
  EXPECT_EQ(r.out.find("passed the barrier"), std::string::npos);
}

TEST_P(FailureTest, StuckRankIsEndedByTheWatchdogNamingTheCollective) {
  const testing::Result r = RunProbe(GetParam(), "stuck", 1);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, 124) << "the job hung until the hang detector ended it";
  EXPECT_NE(r.err.find("error: collective all_reduce (4000 bytes) at step 7 has not finished"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("passed the all-reduce"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Ranks, FailureTest, ::testing::Values(2, 4),
                         [](const auto& info) { return "np" + std::to_string(info.param); });

}  // namespace
}  // namespace loom

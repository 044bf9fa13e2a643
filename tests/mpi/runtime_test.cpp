// Rank discovery under mpirun: ranks are 0..world-1, each once, and the world, local
// ranks and gather agree with what MPI itself says.
#include <gtest/gtest.h>
#include <mpi.h>

#include <set>
#include <vector>

#include "core/log.h"
#include "dist/runtime.h"

namespace loom::dist {
namespace {

TEST(Runtime, RankAndWorldMatchMpi) {
  const ProcessInfo& info = Runtime::Info();
  int rank = -1, world = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ(info.rank, rank);
  EXPECT_EQ(info.world, world);
  EXPECT_GE(info.world, 2) << "this suite runs under mpirun -np 2 or more";
  EXPECT_EQ(log::Rank(), rank);
  EXPECT_EQ(log::World(), world);
}

TEST(Runtime, EveryRankOnceAndLocalRanksCoverTheNode) {
  const ProcessInfo& info = Runtime::Info();
  std::vector<int> ranks(info.world, -1);
  MPI_Allgather(&info.rank, 1, MPI_INT, ranks.data(), 1, MPI_INT, MPI_COMM_WORLD);
  EXPECT_EQ(std::set<int>(ranks.begin(), ranks.end()).size(), static_cast<size_t>(info.world));
  for (int r = 0; r < info.world; ++r) EXPECT_EQ(ranks[r], r);

  // All ranks of this test share one node: local ranks are 0..local_world-1.
  EXPECT_EQ(info.nodes, 1);
  EXPECT_EQ(info.local_world, info.world);
  std::vector<int> locals(info.world, -1);
  MPI_Allgather(&info.local_rank, 1, MPI_INT, locals.data(), 1, MPI_INT, MPI_COMM_WORLD);
  EXPECT_EQ(std::set<int>(locals.begin(), locals.end()).size(), static_cast<size_t>(info.world));
}

TEST(Runtime, GatherToRootCollectsEveryRankInOrder) {
  const ProcessInfo& info = Runtime::Info();
  const std::string mine = "rank-" + std::to_string(info.rank) + std::string(info.rank, 'x');
  const std::vector<std::string> all = GatherToRoot(mine);
  if (info.rank == 0) {
    ASSERT_EQ(all.size(), static_cast<size_t>(info.world));
    for (int r = 0; r < info.world; ++r) {
      EXPECT_EQ(all[r], "rank-" + std::to_string(r) + std::string(r, 'x'));
    }
  } else {
    EXPECT_TRUE(all.empty());
  }
}

TEST(Runtime, RankPrefixNamesTheRank) {
  EXPECT_EQ(log::RankPrefix(), "[rank " + std::to_string(Runtime::Info().rank) + "] ");
}

}  // namespace
}  // namespace loom::dist

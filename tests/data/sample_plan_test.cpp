// The sample order contract: every sample once per epoch across ranks, the same global
// order at every world size, and resumption at any position and world size.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/sample_plan.h"

namespace loom::data {
namespace {

// Runs `steps` batches at `world` ranks and returns, per step, the concatenation of
// the ranks' slices (what the job as a whole saw).
std::vector<std::vector<int64_t>> RunJob(const SamplePlan& plan, int world, LoaderState state,
                                      int steps) {
  std::vector<std::vector<int64_t>> seen;
  for (int s = 0; s < steps; ++s) {
    const std::vector<int64_t> global = plan.GlobalBatch(state);
    std::vector<int64_t> joined;
    for (int r = 0; r < world; ++r) {
      const auto [b, e] = SamplePlan::RankSlice(plan.batch(), r, world);
      EXPECT_EQ(e - b, plan.batch() / world);
      joined.insert(joined.end(), global.begin() + b, global.begin() + e);
    }
    seen.push_back(joined);
    state = plan.Advance(state);
  }
  return seen;
}

TEST(SamplePlan, PermutationIsDeterministicAndDiffersPerEpoch) {
  const SamplePlan a(1000, 10, 7), b(1000, 10, 7), c(1000, 10, 8);
  EXPECT_EQ(a.Permutation(0), b.Permutation(0));
  EXPECT_NE(a.Permutation(0), a.Permutation(1));
  EXPECT_NE(a.Permutation(0), c.Permutation(0));
  std::vector<int64_t> p = a.Permutation(3);
  std::sort(p.begin(), p.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(p[i], i);
}

TEST(SamplePlan, EverySampleOncePerEpochAtWorlds1To4) {
  for (int world : {1, 2, 3, 4}) {
    const int64_t total = 1000, batch = 12 * world;
    const SamplePlan plan(total, batch, 3);
    std::map<int64_t, std::vector<int>> per_rank;  // id -> ranks that saw it in epoch 0
    LoaderState s{0, 0, 3};
    for (int64_t step = 0; step < plan.batches_per_epoch(); ++step) {
      const auto global = plan.GlobalBatch(s);
      for (int r = 0; r < world; ++r) {
        const auto [b, e] = SamplePlan::RankSlice(batch, r, world);
        for (int64_t i = b; i < e; ++i) per_rank[global[i]].push_back(r);
      }
      s = plan.Advance(s);
    }
    EXPECT_EQ(static_cast<int64_t>(per_rank.size()), plan.batches_per_epoch() * batch);
    for (const auto& [id, ranks] : per_rank) ASSERT_EQ(ranks.size(), 1u) << "sample " << id;
    // The next batch starts epoch 1 (the remainder of epoch 0 is dropped).
    EXPECT_EQ(plan.Normalize(s).epoch, 1);
  }
}

TEST(SamplePlan, SameGlobalOrderAtEveryWorldSize) {
  const SamplePlan plan(500, 24, 11);
  const auto one = RunJob(plan, 1, {0, 0, 11}, 50);
  for (int world : {2, 3, 4}) EXPECT_EQ(RunJob(plan, world, {0, 0, 11}, 50), one) << world;
}

TEST(SamplePlan, ResumeContinuesExactlyAtAnyWorldSize) {
  const SamplePlan plan(500, 24, 5);
  const auto straight = RunJob(plan, 2, {0, 0, 5}, 60);  // crosses epoch boundaries
  for (int k : {0, 1, 19, 20, 21, 59}) {
    LoaderState s{0, 0, 5};
    for (int i = 0; i < k; ++i) s = plan.Advance(s);
    // The state goes through its serialized form, as in a checkpoint.
    auto restored = LoaderState::FromJson(s.ToJson());
    ASSERT_TRUE(restored.ok());
    EXPECT_EQ(*restored, s);
    for (int world : {1, 3, 4}) {
      const auto rest = RunJob(plan, world, *restored, 60 - k);
      EXPECT_TRUE(std::equal(rest.begin(), rest.end(), straight.begin() + k))
          << "resume after " << k << " at world " << world;
    }
  }
}

TEST(SamplePlan, RankSlicesTileTheBatch) {
  for (int world = 1; world <= 8; ++world) {
    int64_t next = 0;
    for (int r = 0; r < world; ++r) {
      const auto [b, e] = SamplePlan::RankSlice(64, r, world);
      EXPECT_EQ(b, next);
      next = e;
    }
    EXPECT_EQ(next, 64);
  }
}

TEST(LoaderState, RejectsMalformedJson) {
  EXPECT_FALSE(LoaderState::FromJson("{}").ok());
  EXPECT_FALSE(LoaderState::FromJson("not json").ok());
  EXPECT_FALSE(LoaderState::FromJson(R"({"epoch":-1,"position":0,"seed":1})").ok());
}

}  // namespace
}  // namespace loom::data

// Resuming under mpirun: ranks that see different newest checkpoints (a run directory
// that is not shared) stop with an error naming what each saw, on every rank, instead
// of resuming from different steps; ranks that share one agree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dist/process_group.h"
#include "tests/support/subprocess.h"
#include "train/resume.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

dist::ProcessGroup& Group() {
  static std::unique_ptr<dist::ProcessGroup> group = dist::CreateMpiGroup(120);
  return *group;
}

// A run directory whose newest complete checkpoint is `step`.
void MakeRun(const fs::path& run, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%07lld", static_cast<long long>(step));
  fs::create_directories(run / "checkpoints" / name);
  std::ofstream(run / "checkpoints" / name / "state.json") << "{}";
}

TEST(Resume, RanksThatSeeDifferentCheckpointsStop) {
  testing::TempDir dir;  // per rank: a run directory that is not shared
  MakeRun(dir.path() / "run", 3);
  if (Group().rank() == 1) MakeRun(dir.path() / "run", 6);
  const auto newest = AgreedNewestCheckpoint(Group(), (dir.path() / "run").string());
  ASSERT_FALSE(newest.ok());
  EXPECT_NE(newest.status().message().find("(rank 0: step 3, rank 1: step 6)"), absl::string_view::npos)
      << newest.status();
  EXPECT_NE(newest.status().message().find("every rank shares"), absl::string_view::npos);
}

TEST(Resume, RanksThatShareARunAgree) {
  // One directory for all: rank 0 makes it, the others wait for it.
  const fs::path shared = fs::temp_directory_path() / "loom-resume-shared";
  if (Group().rank() == 0) {
    fs::remove_all(shared);
    MakeRun(shared, 4);
    MakeRun(shared, 8);
  }
  ASSERT_TRUE(Group().Barrier().ok());
  const auto newest = AgreedNewestCheckpoint(Group(), shared.string());
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(*newest, 8);
  ASSERT_TRUE(Group().Barrier().ok());
  if (Group().rank() == 0) fs::remove_all(shared);
}

}  // namespace
}  // namespace loom::train

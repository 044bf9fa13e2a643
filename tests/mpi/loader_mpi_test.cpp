// The loader under mpirun: each rank reads its own slice, and the slices of all ranks,
// gathered, are exactly the batches one process sees; a restored loader continues them.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>

#include "data/loader.h"
#include "data/shard_writer.h"
#include "dist/runtime.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

// Rank 0 writes a small dataset; every rank learns its path.
std::string SharedDataset() {
  static std::string path;
  if (!path.empty()) return path;
  char buffer[256] = {0};
  if (dist::Runtime::Info().rank == 0) {
    const fs::path dir = fs::temp_directory_path() / ("loom-mpi-loader-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    SampleSpec spec;
    spec.height = 4;
    spec.width = 4;
    ShardWriterOptions o;
    o.dir = dir.string();
    o.samples_per_shard = 16;
    auto w = ShardWriter::Create(spec, o);
    std::vector<uint8_t> px(spec.bytes());
    for (int i = 0; i < 150; ++i) {
      std::fill(px.begin(), px.end(), static_cast<uint8_t>(i));
      (void)(*w)->Add(px.data(), "s" + std::to_string(i));
    }
    (void)(*w)->Finish();
    std::snprintf(buffer, sizeof(buffer), "%s", dir.c_str());
  }
  MPI_Bcast(buffer, sizeof(buffer), MPI_CHAR, 0, MPI_COMM_WORLD);
  path = buffer;
  return path;
}

std::vector<int64_t> GatherIds(const torch::Tensor& ids, int world) {
  std::vector<int64_t> mine(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.size(0));
  std::vector<int64_t> all(mine.size() * world);
  MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_INT64_T, all.data(),
                static_cast<int>(mine.size()), MPI_INT64_T, MPI_COMM_WORLD);
  return all;
}

TEST(LoaderMpi, SlicesOfAllRanksAreTheSingleProcessBatches) {
  const auto& info = dist::Runtime::Info();
  const int64_t batch = 8 * info.world;
  LoaderOptions o;
  o.dir = SharedDataset();
  o.batch = batch;
  o.rank = info.rank;
  o.world = info.world;
  auto loader = Loader::Create(o, {0, 0, 21});
  ASSERT_TRUE(loader.ok()) << loader.status();
  LoaderOptions single = o;
  single.rank = 0;
  single.world = 1;
  auto reference = Loader::Create(single, {0, 0, 21});
  ASSERT_TRUE(reference.ok());
  for (int step = 0; step < 25; ++step) {  // several epochs
    auto b = (*loader)->Next();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->ids.size(0), 8);
    auto r = (*reference)->Next();
    ASSERT_TRUE(r.ok());
    const std::vector<int64_t> all = GatherIds(b->ids, info.world);
    const std::vector<int64_t> want(r->ids.data_ptr<int64_t>(), r->ids.data_ptr<int64_t>() + batch);
    ASSERT_EQ(all, want) << "step " << step;
    // Pixels carry the id: the content matches too.
    EXPECT_NEAR(b->pixels[0][0][0][0].item<float>(),
                static_cast<float>(b->ids[0].item<int64_t>()) / 127.5f - 1.0f, 1e-6);
  }
  // The state is the same on every rank: any rank's checkpoint resumes the job.
  const LoaderState s = (*loader)->state();
  int64_t fields[2] = {s.epoch, s.position};
  int64_t root[2] = {s.epoch, s.position};
  MPI_Bcast(root, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
  EXPECT_EQ(fields[0], root[0]);
  EXPECT_EQ(fields[1], root[1]);
  MPI_Barrier(MPI_COMM_WORLD);
  if (info.rank == 0) fs::remove_all(o.dir);
}

}  // namespace
}  // namespace loom::data

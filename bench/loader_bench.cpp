// Loader benchmark (see loader_bench.h).
#include "bench/loader_bench.h"

#include <hdf5.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "data/hdf5_util.h"
#include "data/loader.h"
#include "data/manifest.h"

namespace loom::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// The baseline: one thread, one handle per shard, one hyperslab H5Dread per sample into
// a reused buffer; no checksums, no conversion.
absl::StatusOr<double> BareHdf5(const data::Manifest& m, const std::string& dir,
                                const std::vector<int64_t>& ids) {
  data::h5::Silence();
  std::vector<data::h5::Handle> files, sets;
  std::vector<int64_t> start;
  int64_t offset = 0;
  const char* name = m.spec.modality == data::Modality::kImage ? data::kImages : data::kVideos;
  for (const auto& e : m.shards) {
    files.push_back(data::h5::File(H5Fopen((dir + "/" + e.file).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)));
    sets.push_back(data::h5::Dataset(H5Dopen2(files.back().get(), name, H5P_DEFAULT)));
    if (!sets.back().valid()) return absl::InvalidArgumentError(e.file + ": cannot open " + name);
    start.push_back(offset);
    offset += e.count;
  }
  const std::vector<int64_t> dims = m.spec.dims();
  std::vector<uint8_t> buffer(static_cast<size_t>(m.spec.bytes()));
  hsize_t flat[1] = {static_cast<hsize_t>(m.spec.bytes())};
  data::h5::Handle mem = data::h5::Space(H5Screate_simple(1, flat, nullptr));
  const auto t0 = Clock::now();
  for (int64_t id : ids) {
    const size_t s = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), id) - start.begin() - 1);
    std::vector<hsize_t> first = {static_cast<hsize_t>(id - start[s])}, count = {1};
    for (int64_t d : dims) {
      first.push_back(0);
      count.push_back(static_cast<hsize_t>(d));
    }
    data::h5::Handle space = data::h5::Space(H5Dget_space(sets[s].get()));
    H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, first.data(), nullptr, count.data(), nullptr);
    if (H5Dread(sets[s].get(), H5T_NATIVE_UINT8, mem.get(), space.get(), H5P_DEFAULT, buffer.data()) < 0) {
      return absl::DataLossError("bare read of sample " + std::to_string(id) + " failed");
    }
  }
  return Seconds(t0);
}

double SequentialBytes(const data::Manifest& m, const std::string& dir, int64_t* bytes) {
  std::vector<char> buffer(1 << 20);
  *bytes = 0;
  const auto t0 = Clock::now();
  for (const auto& e : m.shards) {
    FILE* f = std::fopen((dir + "/" + e.file).c_str(), "rb");
    if (f == nullptr) continue;
    size_t n;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) *bytes += static_cast<int64_t>(n);
    std::fclose(f);
  }
  return Seconds(t0);
}

}  // namespace

absl::StatusOr<std::string> RunLoaderBench(const LoaderBenchOptions& o) {
  ASSIGN_OR_RETURN(data::Manifest m, data::ReadManifest(o.data));
  const int64_t batch = std::min(o.batch, m.total);
  const int64_t steps = std::max<int64_t>(1, std::min(o.samples, m.total) / batch);
  const int64_t n = steps * batch;
  const double mb = static_cast<double>(m.spec.bytes()) * static_cast<double>(n) / 1e6;

  // The ids the loader will read, in order: the baseline reads the same ones.
  const data::SamplePlan plan(m.total, batch, 0);
  std::vector<int64_t> ids;
  data::LoaderState s{0, 0, 0};
  for (int64_t i = 0; i < steps; ++i) {
    const auto b = plan.GlobalBatch(s);
    ids.insert(ids.end(), b.begin(), b.end());
    s = plan.Advance(s);
  }

  int64_t file_bytes = 0;
  SequentialBytes(m, o.data, &file_bytes);  // warms the page cache for everything below
  double sequential = 1e30, bare = 1e30;
  for (int r = 0; r < o.repeats; ++r) {
    sequential = std::min(sequential, SequentialBytes(m, o.data, &file_bytes));
    ASSIGN_OR_RETURN(double t, BareHdf5(m, o.data, ids));
    bare = std::min(bare, t);
  }
  const double bare_rate = static_cast<double>(n) / bare;
  log::Info() << "bare HDF5, 1 thread: " << static_cast<int64_t>(bare_rate) << " samples/s, "
              << mb / bare << " MB/s";
  log::Info() << "sequential file read: " << static_cast<double>(file_bytes) / 1e6 / sequential << " MB/s";

  nlohmann::ordered_json sweep = nlohmann::ordered_json::array();
  double best = 0;
  int best_workers = 0;
  for (int workers : o.workers) {
    double t_best = 1e30;
    for (int r = 0; r < o.repeats; ++r) {
      data::LoaderOptions lo;
      lo.dir = o.data;
      lo.batch = batch;
      lo.workers = workers;
      lo.prefetch = 4;
      lo.image_size = o.image_size;
      ASSIGN_OR_RETURN(auto loader, data::Loader::Create(lo, {0, 0, 0}));
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < steps; ++i) RETURN_IF_ERROR(loader->Next().status());
      t_best = std::min(t_best, Seconds(t0));
    }
    const double rate = static_cast<double>(n) / t_best;
    log::Info() << "loader, " << workers << " worker(s): " << static_cast<int64_t>(rate)
                << " samples/s, " << mb / t_best << " MB/s, " << rate / bare_rate << "x bare HDF5";
    sweep.push_back({{"workers", workers}, {"samples_per_s", rate}, {"mb_per_s", mb / t_best},
                     {"ratio_vs_bare_hdf5", rate / bare_rate}});
    if (rate > best) {
      best = rate;
      best_workers = workers;
    }
  }
  nlohmann::ordered_json j;
  j["data"] = o.data;
  j["sample"] = m.spec.ToString();
  j["samples"] = n;
  j["batch"] = batch;
  j["loader_samples_per_s"] = best;
  j["loader_workers"] = best_workers;
  j["loader_mb_per_s"] = best * static_cast<double>(m.spec.bytes()) / 1e6;
  j["bare_hdf5_samples_per_s"] = bare_rate;
  j["bare_hdf5_mb_per_s"] = mb / bare;
  j["sequential_mb_per_s"] = static_cast<double>(file_bytes) / 1e6 / sequential;
  j["ratio_loader_vs_bare_hdf5"] = best / bare_rate;
  j["workers_sweep"] = sweep;
  return j.dump();
}

}  // namespace loom::bench

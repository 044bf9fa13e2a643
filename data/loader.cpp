// Prefetching, order-preserving batch loading (see loader.h).
#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "core/rng.h"
#include "data/pixels.h"
#include "data/shard_reader.h"

namespace loom::data {

// Worker threads, each with its own open shard handles, and the batches in flight.
struct Loader::Impl {
  const LoaderOptions* options = nullptr;
  const Manifest* manifest = nullptr;
  std::vector<int64_t> shard_start;  // global id of each shard's first sample
  std::vector<std::vector<std::unique_ptr<ShardReader>>> readers;  // [worker][shard]
  std::atomic<int64_t> skipped{0};

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::function<void(int)>> tasks;
  std::vector<std::thread> threads;
  bool stopping = false;
  std::deque<std::future<absl::StatusOr<Batch>>> inflight;

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
      tasks.clear();
    }
    wake.notify_all();
    for (std::thread& t : threads) t.join();
  }

  void Start(int workers) {
    for (int w = 0; w < workers; ++w) {
      threads.emplace_back([this, w] {
        for (;;) {
          std::function<void(int)> task;
          {
            std::unique_lock<std::mutex> lock(mutex);
            wake.wait(lock, [this] { return stopping || !tasks.empty(); });
            if (stopping) return;
            task = std::move(tasks.front());
            tasks.pop_front();
          }
          task(w);
        }
      });
    }
  }

  absl::StatusOr<const ShardReader*> Reader(int worker, size_t shard) {
    std::unique_ptr<ShardReader>& slot = readers[worker][shard];
    if (!slot) {
      const std::string path = options->dir + "/" + manifest->shards[shard].file;
      ASSIGN_OR_RETURN(slot, ShardReader::Open(path, &manifest->spec, manifest->caches));
      if (slot->size() != manifest->shards[shard].count) {
        return absl::DataLossError(path + ": " + std::to_string(slot->size()) +
                                   " samples, the manifest says " +
                                   std::to_string(manifest->shards[shard].count));
      }
    }
    return slot.get();
  }

  absl::Status ReadSample(int worker, int64_t id, uint8_t* pixels, std::string* caption,
                          int64_t* label, float* caches) {
    const size_t shard = static_cast<size_t>(
        std::upper_bound(shard_start.begin(), shard_start.end(), id) - shard_start.begin() - 1);
    ASSIGN_OR_RETURN(const ShardReader* reader, Reader(worker, shard));
    return reader->ReadInto(id - shard_start[shard], pixels, caption, label, caches);
  }

  // Reads sample `id`; with skip_bad, a defective sample is logged, counted and replaced
  // by the next readable one, so the batch keeps its size and its order stays fixed.
  absl::Status ReadOrSkip(int worker, int64_t id, uint8_t* pixels, std::string* caption,
                          int64_t* label, float* caches) {
    absl::Status status = ReadSample(worker, id, pixels, caption, label, caches);
    if (status.ok() || !options->skip_bad) return status;
    const int64_t total = manifest->total;
    for (int64_t k = 1; k <= 16 && !status.ok(); ++k) {
      const int64_t count = ++skipped;
      log::Warning() << "skipping sample " << id << " (" << status.message() << "); "
                     << count << " skipped so far";
      if (count > options->max_skipped) {
        return absl::DataLossError("more than " + std::to_string(options->max_skipped) +
                                   " defective samples skipped (data.max_skipped); last: " +
                                   std::string(status.message()));
      }
      id = (id + 1) % total;
      status = ReadSample(worker, id, pixels, caption, label, caches);
    }
    return status;
  }

  absl::StatusOr<Batch> Build(int worker, const LoaderState& start, std::vector<int64_t> ids);
  // Adds token ids and masks of the captions when the loader has a tokenizer.
  absl::StatusOr<Batch> WithTokens(Batch batch);
};

absl::StatusOr<Batch> Loader::Impl::Build(int worker, const LoaderState& start,
                                          std::vector<int64_t> ids) {
  const SampleSpec& spec = manifest->spec;
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t bytes = spec.bytes();
  torch::Tensor raw = torch::empty({n * bytes}, torch::kUInt8);
  uint8_t* dst = raw.data_ptr<uint8_t>();
  Batch batch;
  batch.start = start;
  batch.captions.resize(n);
  batch.labels = torch::empty({n}, torch::kInt64);
  batch.ids = torch::from_blob(ids.data(), {n}, torch::kInt64).clone();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  const int64_t values = manifest->cache_values();
  std::vector<float> caches(static_cast<size_t>(n * values));
  for (int64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(ReadOrSkip(worker, ids[i], dst + i * bytes, &batch.captions[i], &labels[i],
                               values > 0 ? caches.data() + i * values : nullptr));
  }
  // A coin per sample from (seed, epoch, id): the same flips at any world size.
  std::vector<bool> flips(static_cast<size_t>(n), false);
  for (int64_t i = 0; options->flip && i < n; ++i) {
    SplitMix64 rng(SeedFor(start.seed, 0x464c4950ull + static_cast<uint64_t>(start.epoch),
                           static_cast<uint64_t>(ids[i])));
    flips[i] = rng.Next() & 1;
  }
  for (const std::string& name : options->caches) {
    // Offsets of the cache and of its flipped twin in each sample's values.
    int64_t offset = 0, flipped = -1, found = -1;
    const CacheSpec* spec = nullptr;
    for (const CacheSpec& c : manifest->caches) {
      if (c.name == name) {
        found = offset;
        spec = &c;
      }
      if (c.name == name + "_flipped") flipped = offset;
      offset += c.numel();
    }
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), spec->shape.begin(), spec->shape.end());
    torch::Tensor out = torch::empty(shape, torch::kFloat32);
    float* o = out.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t from = flips[i] ? flipped : found;
      std::copy_n(caches.data() + i * values + from, spec->numel(), o + i * spec->numel());
    }
    batch.caches[name] = out;
  }
  if (!options->pixels) return WithTokens(std::move(batch));

  batch.pixels = ModelPixels(dst, n, spec, options->image_size, options->fit, flips);
  return WithTokens(std::move(batch));
}

absl::StatusOr<Batch> Loader::Impl::WithTokens(Batch batch) {
  const int64_t n = static_cast<int64_t>(batch.captions.size());
  if (options->tokenizer) {
    const int L = options->max_tokens;
    batch.tokens = torch::empty({n, L}, torch::kInt64);
    batch.mask = torch::empty({n, L}, torch::kBool);
    for (int64_t i = 0; i < n; ++i) {
      options->tokenizer->Encode(batch.captions[i], L, batch.tokens[i].data_ptr<int64_t>(),
                                 batch.mask[i].data_ptr<bool>());
    }
  }
  return batch;
}

Loader::Loader(const LoaderOptions& options, Manifest manifest, const LoaderState& state)
    : options_(options),
      manifest_(std::move(manifest)),
      plan_(manifest_.total, options.batch, state.seed),
      consumed_(state),
      planned_(state),
      impl_(std::make_unique<Impl>()) {
  impl_->options = &options_;
  impl_->manifest = &manifest_;
  int64_t start = 0;
  for (const ShardEntry& e : manifest_.shards) {
    impl_->shard_start.push_back(start);
    start += e.count;
  }
  const int handles = std::max(1, options_.workers);
  impl_->readers.resize(handles);
  for (auto& r : impl_->readers) r.resize(manifest_.shards.size());
  impl_->Start(options_.workers);
}

Loader::~Loader() = default;

int64_t Loader::skipped() const { return impl_->skipped.load(); }

absl::StatusOr<std::unique_ptr<Loader>> Loader::Create(const LoaderOptions& options,
                                                       const LoaderState& state) {
  ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(options.dir));
  const SampleSpec& spec = manifest.spec;
  const std::string where = options.dir + ": ";
  if (options.world < 1 || options.rank < 0 || options.rank >= options.world) {
    return absl::InvalidArgumentError(where + "bad rank " + std::to_string(options.rank) + " of " +
                                      std::to_string(options.world));
  }
  if (options.batch <= 0 || options.batch % options.world != 0) {
    return absl::InvalidArgumentError("batch " + std::to_string(options.batch) +
                                      " does not divide by the world size " +
                                      std::to_string(options.world) +
                                      "; choose a data.batch_size that does");
  }
  if (options.batch > manifest.total) {
    return absl::InvalidArgumentError(where + "batch " + std::to_string(options.batch) +
                                      " is larger than the dataset (" +
                                      std::to_string(manifest.total) + " samples)");
  }
  if (options.channels != 0 && options.channels != spec.channels) {
    return absl::InvalidArgumentError(where + "holds " + std::to_string(spec.channels) +
                                      "-channel samples but data.channels is " +
                                      std::to_string(options.channels));
  }
  if (options.fit != "resize" && options.fit != "pad") {
    return absl::InvalidArgumentError("fit must be resize or pad, not '" + options.fit + "'");
  }
  if (options.fit == "pad" && options.image_size > 0 &&
      (options.image_size < spec.height || options.image_size < spec.width)) {
    return absl::InvalidArgumentError(where + "samples are " + spec.ToString() +
                                      ", larger than data.image_size " +
                                      std::to_string(options.image_size) +
                                      "; padding cannot shrink them (use data.fit: resize)");
  }
  for (const std::string& name : options.caches) {
    if (manifest.FindCache(name) == nullptr) {
      return absl::InvalidArgumentError(where + "has no cache '" + name +
                                        "'; make one with 'loom data encode --with EXPORT'");
    }
    if (options.flip && manifest.FindCache(name + "_flipped") == nullptr) {
      return absl::InvalidArgumentError(where + "data.flip is on, but the cache '" + name +
                                        "' was encoded without flips (flips are never applied to "
                                        "latents): encode with --flip or set data.flip: false");
    }
  }
  if (options.workers < 0 || options.prefetch < 1) {
    return absl::InvalidArgumentError("workers must be >= 0 and prefetch >= 1");
  }
  return std::unique_ptr<Loader>(new Loader(options, std::move(manifest), state));
}

absl::StatusOr<Batch> Loader::Next() {
  const auto my_ids = [this](const LoaderState& s) {
    const std::vector<int64_t> all = plan_.GlobalBatch(s);
    const auto [begin, end] = SamplePlan::RankSlice(options_.batch, options_.rank, options_.world);
    return std::vector<int64_t>(all.begin() + begin, all.begin() + end);
  };
  if (options_.workers == 0) {
    const LoaderState start = plan_.Normalize(consumed_);
    ASSIGN_OR_RETURN(Batch batch, impl_->Build(0, start, my_ids(start)));
    consumed_ = plan_.Advance(start);
    return batch;
  }
  // Keep `prefetch` batches in flight; futures return them in plan order.
  while (static_cast<int>(impl_->inflight.size()) < options_.prefetch) {
    const LoaderState start = plan_.Normalize(planned_);
    auto task = std::make_shared<std::packaged_task<absl::StatusOr<Batch>(int)>>(
        [this, start, ids = my_ids(start)](int worker) { return impl_->Build(worker, start, ids); });
    impl_->inflight.push_back(task->get_future());
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      impl_->tasks.emplace_back([task](int worker) { (*task)(worker); });
    }
    impl_->wake.notify_one();
    planned_ = plan_.Advance(start);
  }
  absl::StatusOr<Batch> batch = impl_->inflight.front().get();
  impl_->inflight.pop_front();
  if (!batch.ok()) return batch.status();
  consumed_ = plan_.Advance(batch->start);
  return batch;
}

}  // namespace loom::data

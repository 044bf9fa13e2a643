// Caches of a frozen model's outputs (see encode.h).
#include "pipeline/encode.h"

#include <chrono>
#include <filesystem>

#include "core/log.h"
#include "data/manifest.h"
#include "data/pixels.h"
#include "data/shard_reader.h"
#include "data/shard_writer.h"
#include "pipeline/model.h"

namespace loom::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

}  // namespace

absl::StatusOr<EncodeReport> EncodeDataset(const EncodeOptions& o) {
  const auto started = Clock::now();
  if (o.batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  ASSIGN_OR_RETURN(const data::Manifest source, data::ReadManifest(o.data));
  if (fs::exists(fs::path(o.out) / data::kManifestFile)) {
    return absl::AlreadyExistsError(o.out + " already holds a dataset; choose another --out or remove it");
  }
  ASSIGN_OR_RETURN(LoadedModel model, LoadExport(o.with));
  stages::CacheProducer* producer = model.stage->AsCacheProducer();
  if (producer == nullptr) {
    return absl::InvalidArgumentError("--with " + o.with + " is a '" + model.kind +
                                      "' export, which computes nothing to cache (a vae or bert export does)");
  }
  const bool pixels = producer->needs_pixels();
  const stages::ImageSpec input = producer->input_spec();
  const data::Modality reads = producer->reads_clips() ? data::Modality::kVideo : data::Modality::kImage;
  if (pixels && (source.spec.modality != reads || source.spec.channels != input.channels)) {
    return absl::InvalidArgumentError(o.data + " holds " + source.spec.ToString() + " samples; " + o.with + " reads " +
                                      std::to_string(input.channels) + "-channel " +
                                      (producer->reads_clips() ? "clips" : "images"));
  }
  if (pixels && producer->reads_clips()) {
    if (const absl::Status s = producer->CheckSourceFrames(source.spec.frames); !s.ok()) {
      return absl::InvalidArgumentError(o.data + ": " + std::string(s.message()));
    }
  }
  if (pixels && input.fit == "pad" && (source.spec.height > input.size || source.spec.width > input.size)) {
    return absl::InvalidArgumentError(o.data + " holds " + source.spec.ToString() + " samples, larger than the " +
                                      std::to_string(input.size) + "-pixel images " + o.with + " was trained on");
  }
  if (o.flip && !pixels) {
    return absl::InvalidArgumentError("--flip stores the encodings of flipped images; " + o.with + " (a '" + model.kind +
                                      "' export) encodes captions, which a flip leaves as they are: drop --flip");
  }
  data::ShardWriterOptions wo;
  wo.dir = o.out;
  wo.labels = source.has_labels;
  wo.label_names = source.label_names;
  wo.source = source.source + ", encoded by " + o.with;
  // The source's caches travel along (a dataset may carry several models' outputs),
  // followed by this model's.
  wo.caches = source.caches;
  const std::map<std::string, std::string> made_by = {{"kind", model.kind}, {"export", o.with}, {"hash", model.hash}};
  for (const stages::CacheField& f : producer->CacheFields()) {
    for (const std::string& name : {f.name, f.name + "_flipped"}) {
      if (name != f.name && !o.flip) continue;
      if (const data::CacheSpec* earlier = source.FindCache(name); earlier != nullptr) {
        const auto by = earlier->producer.find("export");
        return absl::AlreadyExistsError(o.data + " already carries '" + name + "' (made by " +
                                        (by == earlier->producer.end() ? std::string("another model") : by->second) +
                                        "); encode the dataset it was made from instead");
      }
      wo.caches.push_back({name, f.shape, made_by});
    }
  }
  ASSIGN_OR_RETURN(auto writer, data::ShardWriter::Create(source.spec, wo));
  const int64_t values = [&] {
    int64_t n = 0;
    for (const data::CacheSpec& c : wo.caches) n += c.numel();
    return n;
  }();

  EncodeReport report;
  report.hash = model.hash;
  const int64_t bytes = source.spec.bytes();
  auto last_log = Clock::now();
  for (const data::ShardEntry& e : source.shards) {
    ASSIGN_OR_RETURN(auto reader, data::ShardReader::Open(o.data + "/" + e.file, &source.spec, source.caches));
    for (int64_t from = 0; from < reader->size(); from += o.batch) {
      const int64_t n = std::min(o.batch, reader->size() - from);
      std::vector<uint8_t> raw(static_cast<size_t>(n * bytes));
      std::vector<std::string> captions(n);
      std::vector<int64_t> labels(n);
      std::vector<float> all_old(static_cast<size_t>(n * source.cache_values()));
      for (int64_t i = 0; i < n; ++i) {
        RETURN_IF_ERROR(reader->ReadInto(from + i, raw.data() + i * bytes, &captions[i], &labels[i],
                                         all_old.empty() ? nullptr : all_old.data() + i * source.cache_values()));
      }
      data::Batch batch;
      batch.captions = captions;
      if (pixels) batch.pixels = data::ModelPixels(raw.data(), n, source.spec, static_cast<int>(input.size), input.fit, {});
      std::map<std::string, torch::Tensor> out = producer->EncodeBatch(batch), flipped;
      if (o.flip) {
        batch.pixels = data::ModelPixels(raw.data(), n, source.spec, static_cast<int>(input.size), input.fit,
                                         std::vector<bool>(n, true));
        flipped = producer->EncodeBatch(batch);
      }
      // Each sample's values in the order of wo.caches: the source's, then the new ones.
      std::vector<float> sample(static_cast<size_t>(values));
      const int64_t carried = source.cache_values();
      for (int64_t i = 0; i < n; ++i) {
        float* next = std::copy_n(all_old.data() + i * carried, carried, sample.data());
        for (const stages::CacheField& f : producer->CacheFields()) {
          for (auto* which : {&out, &flipped}) {
            if (which == &flipped && !o.flip) continue;
            const torch::Tensor t = which->at(f.name)[i].contiguous();
            std::copy_n(t.data_ptr<float>(), t.numel(), next);
            next += t.numel();
          }
        }
        RETURN_IF_ERROR(writer->Add(raw.data() + i * bytes, captions[i], labels[i], sample.data()));
      }
      report.samples += n;
      if (std::chrono::duration<double>(Clock::now() - last_log).count() > 10) {
        const double s = std::chrono::duration<double>(Clock::now() - started).count();
        log::Info() << "encoded " << report.samples << " of " << source.total << " samples (" << report.samples / s
                    << " samples/s)";
        last_log = Clock::now();
      }
    }
  }
  RETURN_IF_ERROR(writer->Finish().status());
  const fs::path tokenizer = fs::path(o.data) / "tokenizer.model";
  if (fs::exists(tokenizer)) {
    std::error_code ec;
    fs::copy_file(tokenizer, fs::path(o.out) / "tokenizer.model", fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError("cannot copy " + tokenizer.string() + ": " + ec.message());
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return report;
}

}  // namespace loom::pipeline

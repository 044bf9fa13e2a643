// Shard and manifest writing (see shard_writer.h).
#include "data/shard_writer.h"

#include <cstdio>
#include <filesystem>

#include "core/fs.h"
#include "data/hdf5_util.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

absl::Status Fail(const std::string& path, const std::string& what) {
  return absl::InternalError(path + ": " + what);
}

}  // namespace

absl::Status WriteShardFile(const std::string& path, const SampleSpec& spec, int gzip,
                            const std::vector<uint8_t>& pixels,
                            const std::vector<std::string>& captions,
                            const std::vector<int64_t>* labels,
                            const std::vector<uint32_t>& checksums,
                            const std::vector<CacheSpec>& caches,
                            const std::vector<float>& cache_values) {
  h5::Silence();
  const hsize_t n = captions.size();
  h5::Handle file = h5::File(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  if (!file.valid()) return Fail(path, "cannot create HDF5 file");
  RETURN_IF_ERROR(h5::WriteStringAttr(file.get(), "format", kShardFormat));
  RETURN_IF_ERROR(h5::WriteIntAttr(file.get(), "version", caches.empty() ? kShardVersion : kCacheShardVersion));
  RETURN_IF_ERROR(h5::WriteStringAttr(file.get(), "modality", ModalityName(spec.modality)));
  RETURN_IF_ERROR(h5::WriteIntAttr(file.get(), "count", static_cast<int64_t>(n)));

  // Pixels: one chunk per sample, so a reader touches exactly one chunk per sample.
  std::vector<hsize_t> dims = {n};
  for (int64_t d : spec.dims()) dims.push_back(static_cast<hsize_t>(d));
  std::vector<hsize_t> chunk = dims;
  chunk[0] = 1;
  h5::Handle space = h5::Space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  h5::Handle plist = h5::Plist(H5Pcreate(H5P_DATASET_CREATE));
  // No modification times in the objects: the same samples give byte-identical shards.
  H5Pset_obj_track_times(plist.get(), false);
  h5::Handle plain = h5::Plist(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_obj_track_times(plain.get(), false);
  H5Pset_chunk(plist.get(), static_cast<int>(chunk.size()), chunk.data());
  if (gzip > 0) H5Pset_deflate(plist.get(), static_cast<unsigned>(gzip));
  const char* name = spec.modality == Modality::kImage ? kImages : kVideos;
  h5::Handle images = h5::Dataset(H5Dcreate2(file.get(), name, H5T_STD_U8LE, space.get(),
                                             H5P_DEFAULT, plist.get(), H5P_DEFAULT));
  if (!images.valid() ||
      H5Dwrite(images.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, pixels.data()) < 0) {
    return Fail(path, std::string("cannot write ") + name);
  }

  hsize_t one_dim[1] = {n};
  h5::Handle vec = h5::Space(H5Screate_simple(1, one_dim, nullptr));
  h5::Handle text = h5::Utf8StringType();
  std::vector<const char*> pointers;
  pointers.reserve(n);
  for (const std::string& c : captions) pointers.push_back(c.c_str());
  h5::Handle caps = h5::Dataset(H5Dcreate2(file.get(), kCaptions, text.get(), vec.get(),
                                           H5P_DEFAULT, plain.get(), H5P_DEFAULT));
  if (!caps.valid() ||
      H5Dwrite(caps.get(), text.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()) < 0) {
    return Fail(path, "cannot write captions");
  }
  if (labels != nullptr) {
    h5::Handle ds = h5::Dataset(H5Dcreate2(file.get(), kLabels, H5T_STD_I64LE, vec.get(),
                                           H5P_DEFAULT, plain.get(), H5P_DEFAULT));
    if (!ds.valid() ||
        H5Dwrite(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels->data()) < 0) {
      return Fail(path, "cannot write labels");
    }
  }
  h5::Handle sums = h5::Dataset(H5Dcreate2(file.get(), kChecksums, H5T_STD_U32LE, vec.get(),
                                           H5P_DEFAULT, plain.get(), H5P_DEFAULT));
  if (!sums.valid() ||
      H5Dwrite(sums.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, checksums.data()) < 0) {
    return Fail(path, "cannot write checksums");
  }
  // Caches: float32, one chunk per sample like the pixels; the values of one sample are
  // contiguous in `cache_values`, so each cache is gathered into its own buffer.
  int64_t per_sample = 0;
  for (const CacheSpec& c : caches) per_sample += c.numel();
  int64_t offset = 0;
  for (const CacheSpec& c : caches) {
    std::vector<hsize_t> cdims = {n};
    for (int64_t d : c.shape) cdims.push_back(static_cast<hsize_t>(d));
    std::vector<hsize_t> cchunk = cdims;
    cchunk[0] = 1;
    std::vector<float> values(n * c.numel());
    for (hsize_t i = 0; i < n; ++i) {
      std::copy_n(cache_values.begin() + static_cast<int64_t>(i) * per_sample + offset, c.numel(),
                  values.begin() + static_cast<int64_t>(i) * c.numel());
    }
    offset += c.numel();
    h5::Handle cspace = h5::Space(H5Screate_simple(static_cast<int>(cdims.size()), cdims.data(), nullptr));
    h5::Handle cplist = h5::Plist(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_obj_track_times(cplist.get(), false);
    H5Pset_chunk(cplist.get(), static_cast<int>(cchunk.size()), cchunk.data());
    h5::Handle ds = h5::Dataset(H5Dcreate2(file.get(), c.name.c_str(), H5T_IEEE_F32LE, cspace.get(), H5P_DEFAULT,
                                           cplist.get(), H5P_DEFAULT));
    if (!ds.valid() || H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0) {
      return Fail(path, "cannot write cache " + c.name);
    }
  }
  images.Reset();
  caps.Reset();
  sums.Reset();
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) return Fail(path, "cannot flush");
  file.Reset();
  return SyncPath(path);
}

ShardWriter::ShardWriter(const SampleSpec& spec, ShardWriterOptions options)
    : spec_(spec), options_(std::move(options)) {
  if (options_.samples_per_shard > 0) {
    per_shard_ = options_.samples_per_shard;
  } else {
    per_shard_ = std::clamp<int64_t>((64 << 20) / std::max<int64_t>(1, spec_.bytes()), 16, 4096);
  }
  manifest_.spec = spec_;
  manifest_.has_labels = options_.labels;
  manifest_.label_names = options_.label_names;
  manifest_.source = options_.source;
  manifest_.caches = options_.caches;
}

ShardWriter::~ShardWriter() = default;

absl::StatusOr<std::unique_ptr<ShardWriter>> ShardWriter::Create(const SampleSpec& spec,
                                                                 ShardWriterOptions options) {
  RETURN_IF_ERROR(spec.Validate());
  if (options.dir.empty()) return absl::InvalidArgumentError("no output directory given");
  if (options.gzip < 0 || options.gzip > 9) {
    return absl::InvalidArgumentError("gzip level must be 0..9, not " + std::to_string(options.gzip));
  }
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return absl::InternalError("cannot create " + options.dir + ": " + ec.message());
  if (fs::exists(fs::path(options.dir) / kManifestFile)) {
    return absl::AlreadyExistsError(options.dir + " already holds a dataset (" + kManifestFile +
                                    "); choose another --out or remove it");
  }
  return std::unique_ptr<ShardWriter>(new ShardWriter(spec, std::move(options)));
}

absl::Status ShardWriter::Add(const uint8_t* pixels, std::string_view caption, int64_t label,
                              const float* caches) {
  if (finished_) return absl::FailedPreconditionError("ShardWriter::Add after Finish");
  if (!IsValidUtf8(caption)) {
    return absl::InvalidArgumentError("sample " + std::to_string(total_) +
                                      ": caption is not valid UTF-8");
  }
  if (caption.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("sample " + std::to_string(total_) +
                                      ": caption contains a NUL byte");
  }
  const int64_t stored_label = options_.labels ? label : -1;
  pixels_.insert(pixels_.end(), pixels, pixels + spec_.bytes());
  captions_.emplace_back(caption);
  labels_.push_back(stored_label);
  const int64_t values = manifest_.cache_values();
  if (values > 0 && caches == nullptr) {
    return absl::InvalidArgumentError("sample " + std::to_string(total_) + ": the dataset has caches but none were given");
  }
  if (values > 0) cache_values_.insert(cache_values_.end(), caches, caches + values);
  checksums_.push_back(SampleChecksum(pixels, spec_.bytes(), caption, stored_label, caches, values));
  ++total_;
  if (static_cast<int64_t>(captions_.size()) >= per_shard_) return FlushShard();
  return absl::OkStatus();
}

absl::Status ShardWriter::FlushShard() {
  if (captions_.empty()) return absl::OkStatus();
  char name[64];
  std::snprintf(name, sizeof(name), "%s-%05zu.h5", options_.prefix.c_str(), manifest_.shards.size());
  const std::string final_path = (fs::path(options_.dir) / name).string();
  const std::string tmp_path = final_path + ".tmp";
  absl::Status written = WriteShardFile(tmp_path, spec_, options_.gzip, pixels_, captions_,
                                        options_.labels ? &labels_ : nullptr, checksums_, options_.caches,
                                        cache_values_);
  if (!written.ok()) {
    std::remove(tmp_path.c_str());
    return written;
  }
  std::error_code ec;
  fs::rename(tmp_path, final_path, ec);
  if (ec) return absl::InternalError("cannot rename " + tmp_path + ": " + ec.message());
  ShardEntry entry;
  entry.file = name;
  entry.count = static_cast<int64_t>(captions_.size());
  RETURN_IF_ERROR(FileCrc32(final_path, &entry.crc32, &entry.bytes));
  manifest_.shards.push_back(entry);
  manifest_.total += entry.count;
  pixels_.clear();
  captions_.clear();
  labels_.clear();
  checksums_.clear();
  cache_values_.clear();
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ShardWriter::Finish() {
  if (finished_) return absl::FailedPreconditionError("ShardWriter::Finish called twice");
  RETURN_IF_ERROR(FlushShard());
  finished_ = true;
  if (manifest_.total == 0) {
    return absl::FailedPreconditionError(options_.dir + ": no samples were written");
  }
  RETURN_IF_ERROR(SyncPath(options_.dir));
  RETURN_IF_ERROR(WriteManifest(options_.dir, manifest_));
  return manifest_;
}

}  // namespace loom::data

// Schema-checked, checksum-verified shard reading (see shard_reader.h).
#include "data/shard_reader.h"

#include <filesystem>

namespace loom::data {
namespace {

// Checks that dataset `name` exists with the given element class/size and rank.
absl::StatusOr<h5::Handle> OpenDataset(hid_t file, const std::string& path, const char* name,
                                       H5T_class_t type_class, size_t type_size, int rank,
                                       bool required) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
    if (!required) return h5::Handle();
    return absl::InvalidArgumentError(path + ": dataset '" + std::string(name) +
                                      "' is missing (not a loom shard, or damaged)");
  }
  h5::Handle ds = h5::Dataset(H5Dopen2(file, name, H5P_DEFAULT));
  if (!ds.valid()) {
    return absl::InvalidArgumentError(path + ": dataset '" + std::string(name) + "' cannot be opened");
  }
  h5::Handle type = h5::Type(H5Dget_type(ds.get()));
  const bool class_ok = H5Tget_class(type.get()) == type_class;
  const bool size_ok = type_size == 0 || H5Tget_size(type.get()) == type_size;
  if (!class_ok || !size_ok) {
    return absl::InvalidArgumentError(path + ": dataset '" + std::string(name) +
                                      "' has the wrong element type");
  }
  ASSIGN_OR_RETURN(std::vector<hsize_t> dims, h5::Dims(ds.get()));
  if (static_cast<int>(dims.size()) != rank) {
    return absl::InvalidArgumentError(path + ": dataset '" + std::string(name) + "' has rank " +
                                      std::to_string(dims.size()) + ", expected " +
                                      std::to_string(rank));
  }
  return ds;
}

}  // namespace

ShardReader::~ShardReader() = default;

absl::StatusOr<std::unique_ptr<ShardReader>> ShardReader::Open(const std::string& path,
                                                               const SampleSpec* expect,
                                                               const std::vector<CacheSpec>& caches) {
  h5::Silence();
  if (!std::filesystem::exists(path)) return absl::NotFoundError(path + ": shard file is missing");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    return absl::InvalidArgumentError(path + ": not an HDF5 file (truncated or damaged?)");
  }
  std::unique_ptr<ShardReader> r(new ShardReader());
  r->path_ = path;
  r->file_ = h5::File(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!r->file_.valid()) {
    return absl::InvalidArgumentError(path + ": cannot open as HDF5 (truncated or damaged?)");
  }
  const hid_t file = r->file_.get();
  const auto attr_error = [&](const absl::Status& s) {
    return absl::InvalidArgumentError(path + ": " + std::string(s.message()));
  };
  auto format = h5::ReadStringAttr(file, "format");
  if (!format.ok()) return attr_error(format.status());
  if (*format != kShardFormat) {
    return absl::InvalidArgumentError(path + ": format is '" + *format + "', not " + kShardFormat);
  }
  auto version = h5::ReadIntAttr(file, "version");
  if (!version.ok()) return attr_error(version.status());
  if (*version != kShardVersion && *version != kCacheShardVersion) {
    return absl::InvalidArgumentError(path + ": shard version " + std::to_string(*version) +
                                      " is not supported (this loom reads versions " +
                                      std::to_string(kShardVersion) + " and " +
                                      std::to_string(kCacheShardVersion) + ")");
  }
  if ((*version == kCacheShardVersion) != !caches.empty()) {
    return absl::InvalidArgumentError(path + ": shard version " + std::to_string(*version) +
                                      (caches.empty() ? " holds caches the manifest does not list"
                                                      : " holds no caches, but the manifest lists some"));
  }
  auto modality = h5::ReadStringAttr(file, "modality");
  if (!modality.ok()) return attr_error(modality.status());
  if (absl::Status s = ParseModality(*modality, &r->spec_.modality); !s.ok()) return attr_error(s);

  const bool video = r->spec_.modality == Modality::kVideo;
  const char* pixel_name = video ? kVideos : kImages;
  ASSIGN_OR_RETURN(r->pixels_, OpenDataset(file, path, pixel_name, H5T_INTEGER, 1, video ? 5 : 4, true));
  ASSIGN_OR_RETURN(std::vector<hsize_t> dims, h5::Dims(r->pixels_.get()));
  size_t k = 1;
  if (video) r->spec_.frames = static_cast<int>(dims[k++]);
  r->spec_.height = static_cast<int>(dims[k++]);
  r->spec_.width = static_cast<int>(dims[k++]);
  r->spec_.channels = static_cast<int>(dims[k++]);
  if (absl::Status s = r->spec_.Validate(); !s.ok()) return attr_error(s);
  if (expect != nullptr && !(*expect == r->spec_)) {
    return absl::InvalidArgumentError(path + ": samples are " + r->spec_.ToString() +
                                      " but the manifest says " + expect->ToString());
  }
  r->count_ = static_cast<int64_t>(dims[0]);

  ASSIGN_OR_RETURN(r->captions_, OpenDataset(file, path, kCaptions, H5T_STRING, 0, 1, true));
  ASSIGN_OR_RETURN(r->checksums_, OpenDataset(file, path, kChecksums, H5T_INTEGER, 4, 1, true));
  ASSIGN_OR_RETURN(r->labels_, OpenDataset(file, path, kLabels, H5T_INTEGER, 8, 1, false));
  for (const h5::Handle* ds : {&r->captions_, &r->checksums_, &r->labels_}) {
    if (!ds->valid()) continue;
    ASSIGN_OR_RETURN(std::vector<hsize_t> d, h5::Dims(ds->get()));
    if (static_cast<int64_t>(d[0]) != r->count_) {
      return absl::InvalidArgumentError(path + ": datasets disagree on the sample count (" +
                                        std::to_string(d[0]) + " vs " +
                                        std::to_string(r->count_) + ")");
    }
  }
  {
    h5::Handle type = h5::Type(H5Dget_type(r->captions_.get()));
    if (H5Tis_variable_str(type.get()) <= 0) {
      return absl::InvalidArgumentError(path + ": captions are not variable-length strings");
    }
  }
  for (const CacheSpec& c : caches) {
    ASSIGN_OR_RETURN(h5::Handle ds, OpenDataset(file, path, c.name.c_str(), H5T_FLOAT, 4,
                                                static_cast<int>(c.shape.size()) + 1, true));
    ASSIGN_OR_RETURN(std::vector<hsize_t> d, h5::Dims(ds.get()));
    std::vector<int64_t> shape(d.begin() + 1, d.end());
    if (static_cast<int64_t>(d[0]) != r->count_ || shape != c.shape) {
      return absl::InvalidArgumentError(path + ": cache '" + c.name + "' has another shape than the manifest says");
    }
    r->cache_sets_.push_back(std::move(ds));
    r->cache_values_ += c.numel();
  }
  r->caches_ = caches;
  r->caption_type_ = h5::Utf8StringType();
  RETURN_IF_ERROR(r->LoadMetadata());
  return r;
}

absl::Status ShardReader::LoadMetadata() {
  const size_t n = static_cast<size_t>(count_);
  std::vector<char*> texts(n, nullptr);
  if (H5Dread(captions_.get(), caption_type_.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, texts.data()) < 0) {
    return absl::DataLossError(path_ + ": captions cannot be read (damaged?)");
  }
  caption_cache_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    caption_cache_[i] = texts[i] != nullptr ? texts[i] : "";
    if (texts[i] != nullptr) H5free_memory(texts[i]);
  }
  label_cache_.assign(n, -1);
  if (labels_.valid() &&
      H5Dread(labels_.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, label_cache_.data()) < 0) {
    return absl::DataLossError(path_ + ": labels cannot be read (damaged?)");
  }
  checksum_cache_.resize(n);
  if (H5Dread(checksums_.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
              checksum_cache_.data()) < 0) {
    return absl::DataLossError(path_ + ": checksums cannot be read (damaged?)");
  }
  return absl::OkStatus();
}

absl::Status ShardReader::Bad(int64_t index, const std::string& what) const {
  return absl::DataLossError(path_ + ": sample " + std::to_string(index) + ": " + what);
}

absl::Status ShardReader::Read(int64_t index, Sample* out) const {
  out->pixels.resize(static_cast<size_t>(spec_.bytes()));
  out->caches.resize(static_cast<size_t>(cache_values_));
  return ReadInto(index, out->pixels.data(), &out->caption, &out->label, out->caches.data());
}

absl::Status ShardReader::ReadInto(int64_t index, uint8_t* pixels, std::string* caption,
                                   int64_t* label, float* caches) const {
  if (index < 0 || index >= count_) {
    return absl::OutOfRangeError(path_ + ": sample " + std::to_string(index) + " is out of range (" +
                                 std::to_string(count_) + " samples)");
  }
  const hsize_t i = static_cast<hsize_t>(index);
  // Pixels: the one chunk of this sample.
  std::vector<hsize_t> start = {i}, count = {1};
  for (int64_t d : spec_.dims()) {
    start.push_back(0);
    count.push_back(static_cast<hsize_t>(d));
  }
  h5::Handle file_space = h5::Space(H5Dget_space(pixels_.get()));
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  hsize_t flat[1] = {static_cast<hsize_t>(spec_.bytes())};
  h5::Handle mem_space = h5::Space(H5Screate_simple(1, flat, nullptr));
  if (H5Dread(pixels_.get(), H5T_NATIVE_UINT8, mem_space.get(), file_space.get(), H5P_DEFAULT,
              pixels) < 0) {
    return Bad(index, "pixels cannot be read (damaged chunk?)");
  }
  if (cache_values_ > 0 && caches == nullptr) return Bad(index, "the shard's caches need a buffer");
  float* next = caches;
  for (size_t c = 0; c < caches_.size(); ++c) {
    std::vector<hsize_t> cstart = {i}, ccount = {1};
    for (int64_t d : caches_[c].shape) {
      cstart.push_back(0);
      ccount.push_back(static_cast<hsize_t>(d));
    }
    h5::Handle cspace = h5::Space(H5Dget_space(cache_sets_[c].get()));
    H5Sselect_hyperslab(cspace.get(), H5S_SELECT_SET, cstart.data(), nullptr, ccount.data(), nullptr);
    hsize_t cflat[1] = {static_cast<hsize_t>(caches_[c].numel())};
    h5::Handle cmem = h5::Space(H5Screate_simple(1, cflat, nullptr));
    if (H5Dread(cache_sets_[c].get(), H5T_NATIVE_FLOAT, cmem.get(), cspace.get(), H5P_DEFAULT, next) < 0) {
      return Bad(index, "cache '" + caches_[c].name + "' cannot be read (damaged chunk?)");
    }
    next += caches_[c].numel();
  }
  *caption = caption_cache_[i];
  *label = label_cache_[i];
  if (!IsValidUtf8(*caption)) return Bad(index, "caption is not valid UTF-8");
  if (SampleChecksum(pixels, spec_.bytes(), *caption, *label, caches, cache_values_) != checksum_cache_[i]) {
    return Bad(index, "checksum mismatch (the file is damaged; re-create or restore it)");
  }
  return absl::OkStatus();
}

}  // namespace loom::data

// Slices of tensors across files (see slice_store.h).
#include "train/slice_store.h"

#include <filesystem>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace loom::train {
namespace {

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

absl::StatusOr<int64_t> WriteSliceFile(const std::string& path, const std::vector<StoredSlice>& slices,
                                       const std::map<std::string, std::string>& metadata) {
  std::vector<NamedTensor> tensors;
  std::map<std::string, std::string> meta = metadata;
  for (const StoredSlice& s : slices) {
    const bool whole = s.begin == 0 && s.end == Numel(s.shape);
    if (s.data.numel() != s.end - s.begin) {
      return absl::InternalError("slice '" + s.key + "' holds " + std::to_string(s.data.numel()) + " elements for [" +
                                 std::to_string(s.begin) + ", " + std::to_string(s.end) + ")");
    }
    if (whole) {
      tensors.push_back({s.key, s.data.reshape(s.shape)});
    } else {
      tensors.push_back({s.key, s.data.reshape({-1})});
      meta["range/" + s.key] = std::to_string(s.begin) + "," + std::to_string(s.end);
      meta["shape/" + s.key] = absl::StrJoin(s.shape, ",");
    }
  }
  RETURN_IF_ERROR(WriteSafetensors(path, tensors, meta));
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return absl::InternalError(path + ": " + ec.message());
  return static_cast<int64_t>(size);
}

absl::StatusOr<SliceStore> SliceStore::Open(const std::vector<std::string>& paths) {
  SliceStore store;
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
    const size_t index = store.files_.size();
    for (const SafetensorsEntry& e : file.entries()) {
      Piece piece{index, e.name, 0, Numel(e.shape)};
      std::vector<int64_t> shape = e.shape;
      const auto range = file.metadata().find("range/" + e.name);
      if (range != file.metadata().end()) {
        const std::vector<std::string> ends = absl::StrSplit(range->second, ',');
        const auto dims = file.metadata().find("shape/" + e.name);
        if (ends.size() != 2 || dims == file.metadata().end()) {
          return absl::DataLossError(path + ": tensor '" + e.name + "' has a malformed range");
        }
        try {
          piece.begin = std::stoll(ends[0]);
          piece.end = std::stoll(ends[1]);
          shape.clear();
          if (!dims->second.empty()) {
            for (const auto& d : absl::StrSplit(dims->second, ',')) shape.push_back(std::stoll(std::string(d)));
          }
        } catch (const std::exception&) {
          return absl::DataLossError(path + ": tensor '" + e.name + "' has a malformed range");
        }
        if (piece.begin < 0 || piece.end - piece.begin != Numel(e.shape) || piece.end > Numel(shape)) {
          return absl::DataLossError(path + ": tensor '" + e.name + "' has a range that does not fit it");
        }
      }
      Key& key = store.keys_[e.name];
      if (!key.pieces.empty() && key.shape != shape) {
        return absl::DataLossError(path + ": tensor '" + e.name + "' has another shape than in another file");
      }
      key.shape = shape;
      key.pieces.push_back(piece);
    }
    store.files_.push_back(std::move(file));
  }
  for (auto& [name, key] : store.keys_) {
    std::sort(key.pieces.begin(), key.pieces.end(),
              [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
  }
  return store;
}

std::vector<int64_t> SliceStore::Shape(const std::string& key) const {
  const auto it = keys_.find(key);
  return it == keys_.end() ? std::vector<int64_t>{} : it->second.shape;
}

std::vector<std::string> SliceStore::Keys(const std::string& prefix) const {
  std::vector<std::string> out;
  for (const auto& [name, key] : keys_) {
    if (name.rfind(prefix, 0) == 0) out.push_back(name.substr(prefix.size()));
  }
  return out;
}

absl::StatusOr<torch::Tensor> SliceStore::Read(const std::string& key, int64_t begin, int64_t end) const {
  const auto it = keys_.find(key);
  if (it == keys_.end()) return absl::NotFoundError("no stored tensor '" + key + "'");
  if (end <= begin) return torch::empty({0});
  torch::Tensor out;
  int64_t covered = begin;
  for (const Piece& p : it->second.pieces) {
    if (p.end <= begin || p.begin >= end) continue;
    if (p.begin > covered) break;  // a gap: reported below
    ASSIGN_OR_RETURN(torch::Tensor piece, files_[p.file].Read(p.name));
    piece = piece.reshape({-1});
    if (!out.defined()) out = torch::empty({end - begin}, piece.options());
    const int64_t lo = std::max(begin, p.begin), hi = std::min(end, p.end);
    out.narrow(0, lo - begin, hi - lo).copy_(piece.narrow(0, lo - p.begin, hi - lo));
    covered = std::max(covered, hi);
  }
  if (covered < end || !out.defined()) {
    return absl::DataLossError("stored tensor '" + key + "' misses elements [" + std::to_string(covered) + ", " +
                               std::to_string(end) + ") (a file of the checkpoint is missing)");
  }
  return out;
}

absl::Status SliceStore::Verify() const {
  for (const auto& [name, key] : keys_) {
    for (const Piece& p : key.pieces) RETURN_IF_ERROR(files_[p.file].Read(p.name).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> SliceStore::ReadWhole(const std::string& key) const {
  const std::vector<int64_t> shape = Shape(key);
  ASSIGN_OR_RETURN(torch::Tensor flat, Read(key, 0, Numel(shape)));
  return flat.reshape(shape);
}

}  // namespace loom::train

// Tensors stored as slices across several safetensors files, as ranks write them: each
// file holds contiguous element ranges of flattened tensors ("param/dit.final_linear.weight"
// elements [0, 512)), so ranks that hold 1/N of a tensor write 1/N, and a reader at any
// world size reads just the ranges it needs. A whole tensor is stored with its shape; a
// part is stored 1-D, with "range/<key>" = "begin,end" and "shape/<key>" = "d0,d1,..."
// in the file's metadata. Every tensor carries its CRC-32 (core/safetensors.h).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "core/safetensors.h"

namespace loom::train {

struct StoredSlice {
  std::string key;
  std::vector<int64_t> shape;  // the whole tensor's
  int64_t begin = 0;           // element range of the flattened tensor
  int64_t end = 0;
  torch::Tensor data;          // end - begin elements (any shape)
};

// Writes the slices to one safetensors file (atomically); returns its size in bytes.
absl::StatusOr<int64_t> WriteSliceFile(const std::string& path, const std::vector<StoredSlice>& slices,
                                       const std::map<std::string, std::string>& metadata = {});

// An index over slice files (headers only until something is read).
class SliceStore {
 public:
  static absl::StatusOr<SliceStore> Open(const std::vector<std::string>& paths);

  bool Has(const std::string& key) const { return keys_.count(key) > 0; }
  // The whole tensor's shape.
  std::vector<int64_t> Shape(const std::string& key) const;
  // Keys that start with `prefix`, without it.
  std::vector<std::string> Keys(const std::string& prefix) const;
  // Elements [begin, end) of the flattened tensor, 1-D; every piece read is checksummed.
  absl::StatusOr<torch::Tensor> Read(const std::string& key, int64_t begin, int64_t end) const;
  // The whole tensor, shaped.
  absl::StatusOr<torch::Tensor> ReadWhole(const std::string& key) const;
  // Reads every stored piece once, checking its checksum: the first damage found.
  absl::Status Verify() const;

 private:
  struct Piece {
    size_t file = 0;
    std::string name;  // the tensor's name in its file (the key)
    int64_t begin = 0, end = 0;
  };
  struct Key {
    std::vector<int64_t> shape;
    std::vector<Piece> pieces;  // sorted by begin
  };
  std::vector<SafetensorsFile> files_;
  std::map<std::string, Key> keys_;
};

}  // namespace loom::train

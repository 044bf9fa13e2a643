// Torch tensors in safetensors files: 8-byte little-endian header length, a JSON header
// with each tensor's dtype, shape and [begin, end) data offsets (plus optional
// "__metadata__" strings), padded with spaces to 8 bytes, then the raw data. The format
// checks themselves are torch-free (safetensors_header.h), so they can be fuzzed alone.
// loom records a CRC-32 of each tensor's bytes in the metadata ("crc32/<name>") and
// checks it on every read: a flipped byte anywhere in a file is an error naming the
// file (and the tensor, when it is in the data). Files without them still load.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/safetensors_header.h"

namespace loom {

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;  // any device and layout; written as contiguous CPU data
};

// Writes `tensors` (names unique) to `path` atomically, in name order.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of a safetensors file after validating the whole file
// (core/safetensors_header.h); errors name the file and what is wrong.
absl::StatusOr<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path);

// One file opened for reading single tensors: only the header is read and checked
// against the file size at Open; Read() reads one tensor's bytes.
class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);
  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return index_.metadata; }
  // The tensors' names, dtypes and shapes.
  const std::vector<SafetensorsEntry>& entries() const { return index_.entries; }
  const SafetensorsEntry* Find(const std::string& name) const;
  // The tensor `name`, its CRC-32 checked when the file records one.
  absl::StatusOr<torch::Tensor> Read(const std::string& name) const;

 private:
  std::string path_;
  SafetensorsIndex index_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace loom

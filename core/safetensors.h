// Torch tensors in safetensors files: 8-byte little-endian header length, a JSON header
// with each tensor's dtype, shape and [begin, end) data offsets (plus optional
// "__metadata__" strings), padded with spaces to 8 bytes, then the raw data. The format
// checks themselves are torch-free (safetensors_header.h), so they can be fuzzed alone.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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

}  // namespace loom

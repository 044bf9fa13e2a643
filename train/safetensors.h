// Writing tensors in the safetensors format: 8-byte little-endian header length, a JSON
// header with each tensor's dtype, shape and [begin, end) data offsets (plus optional
// "__metadata__" strings), padded with spaces to 8 bytes, then the raw data.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom::train {

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;  // any device and layout; written as contiguous CPU data
};

// Writes `tensors` (names unique) to `path` atomically, in name order.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace loom::train

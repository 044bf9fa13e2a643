// Sample grids: images [N, C, H, W] in [-1, 1] laid out `columns` wide in one PNG.
#pragma once

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"

namespace loom::train {

absl::Status WriteGrid(const std::string& path, const torch::Tensor& images, int columns);

}  // namespace loom::train

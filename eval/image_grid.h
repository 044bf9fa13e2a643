// Image grids: images [N, C, H, W] in [-1, 1] laid out `columns` wide in one PNG (sample
// grids, reconstructions beside their inputs).
#pragma once

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"

namespace loom::eval {

absl::Status WriteGrid(const std::string& path, const torch::Tensor& images, int columns);

}  // namespace loom::eval

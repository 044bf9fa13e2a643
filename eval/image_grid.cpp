// Image grid PNGs (see image_grid.h).
#include "eval/image_grid.h"

#include "core/image_io.h"

namespace loom::eval {

absl::Status WriteGrid(const std::string& path, const torch::Tensor& images, int columns) {
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t rows = (n + columns - 1) / columns, pad = 2;
  const int64_t gh = rows * (h + pad) + pad, gw = columns * (w + pad) + pad;
  torch::Tensor grid = torch::zeros({gh, gw, c}, torch::kUInt8);
  const torch::Tensor px = ((images.detach().to(torch::kCPU) + 1) * 127.5).round().clamp(0, 255).to(torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / columns, col = i % columns;
    grid.narrow(0, pad + r * (h + pad), h).narrow(1, pad + col * (w + pad), w).copy_(px[i].permute({1, 2, 0}));
  }
  return WritePng(path, grid.contiguous().data_ptr<uint8_t>(), static_cast<int>(gw), static_cast<int>(gh),
                  static_cast<int>(c));
}

}  // namespace loom::eval

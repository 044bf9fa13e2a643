// Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files) into shards, with
// captions naming the garment in several wordings and the class label kept.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom::data {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// The ten class names, index = label.
const std::vector<std::string>& FashionClassNames();

// "a sneaker", "a pair of trousers", "an ankle boot": class `label` with the article
// English needs, for captions that build sentences around the garment.
const std::string& FashionItemPhrase(int label);

// A caption for class `label`, wording chosen by `variant` (any integer).
std::string FashionCaption(int label, uint64_t variant);

// One split of Fashion-MNIST in memory.
struct FashionMnist {
  int64_t count = 0;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> images;  // [count, height, width], 0 = background
  std::vector<uint8_t> labels;  // [count], each 0..9

  const uint8_t* image(int64_t i) const { return images.data() + i * height * width; }
};

// Reads split "train" (60,000) or "test" (10,000) from the IDX .gz files in `source_dir`.
absl::StatusOr<FashionMnist> LoadFashionMnist(const std::string& split,
                                              const std::string& source_dir = kFashionMnistDir);

// Writes OUT/train (60,000) and OUT/test (10,000). `limit` > 0 keeps only the first
// `limit` samples of each split (tests).
absl::Status IngestFashionMnist(const std::string& source_dir, const std::string& out,
                                int64_t limit = 0);

}  // namespace loom::data

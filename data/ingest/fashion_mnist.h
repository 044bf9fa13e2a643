// Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files) into shards, with
// captions naming the garment in several wordings and the class label kept.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace loom::data {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// The ten class names, index = label.
const std::vector<std::string>& FashionClassNames();

// A caption for class `label`, wording chosen by `variant` (any integer).
std::string FashionCaption(int label, uint64_t variant);

// Writes OUT/train (60,000) and OUT/test (10,000). `limit` > 0 keeps only the first
// `limit` samples of each split (tests).
absl::Status IngestFashionMnist(const std::string& source_dir, const std::string& out,
                                int64_t limit = 0);

}  // namespace loom::data

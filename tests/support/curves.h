// Helpers for tests that compare loss curves.
#pragma once

#include <cstddef>
#include <vector>

namespace loom::testing {

// The mean of v[from, to).
inline double Mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

}  // namespace loom::testing

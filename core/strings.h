// Small string utilities: edit distance and nearest-name suggestions for error
// messages, exact shortest formatting of doubles, and joining.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loom {

// Levenshtein distance between two strings.
int EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `name` if it is close enough to be a plausible typo,
// else an empty string.
std::string NearestName(std::string_view name, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" for the nearest candidate, or "" when none is close.
std::string DidYouMean(std::string_view name, const std::vector<std::string>& candidates);

// Shortest decimal text that parses back to exactly `value` ("0.0003", "1e-08").
std::string FormatDouble(double value);

std::string Join(const std::vector<std::string>& parts, std::string_view sep);

}  // namespace loom

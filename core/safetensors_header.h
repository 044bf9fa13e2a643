// A strict safetensors parser with no torch: reads the 8-byte header length and the JSON
// header, and checks every entry against the file so that readers can copy tensor bytes
// without further checks. Kept torch-free so it can be unit tested and fuzzed alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

// The largest JSON header accepted, as in the reference implementation: a bad length
// field must not make a reader allocate gigabytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  std::vector<int64_t> shape;  // each >= 0; [] is a scalar
  uint64_t begin = 0;          // [begin, end) relative to the data section
  uint64_t end = 0;
};

struct SafetensorsIndex {
  uint64_t header_size = 0;  // bytes of JSON (with its space padding)
  uint64_t data_start = 0;   // 8 + header_size: where the data section begins in the file
  std::vector<SafetensorsEntry> entries;  // ordered by (begin, end, name)
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent
};

// Bytes per element of a safetensors dtype name, or 0 for a dtype loom does not know.
size_t SafetensorsDtypeSize(std::string_view dtype);

// Parses and validates a whole safetensors file image. On success the entries tile the
// data section exactly: sorted by offset they start at 0, leave no gap and no overlap,
// and end at the end of the file; each one's byte count is its shape times its dtype size.
// Errors are one line that starts with `where` (the file path) and names the problem:
// DataLossError for a malformed or inconsistent file, InvalidArgumentError for a
// well-formed tensor whose dtype loom does not support.
absl::StatusOr<SafetensorsIndex> ParseSafetensors(std::string_view bytes, const std::string& where);

// The JSON header length stored in the first 8 bytes of a file of `file_size` bytes,
// checked against the limit and the file size. `first_bytes` holds at least the first
// 8 bytes of the file when the file has that many.
absl::StatusOr<uint64_t> SafetensorsHeaderSize(std::string_view first_bytes, uint64_t file_size,
                                               const std::string& where);

// As ParseSafetensors, for a file of `file_size` bytes of which only `prefix` (the first
// 8 + header size bytes or more, see SafetensorsHeaderSize) has been read: a large file is
// validated without reading its data.
absl::StatusOr<SafetensorsIndex> ParseSafetensorsHeader(std::string_view prefix, uint64_t file_size,
                                                        const std::string& where);

}  // namespace loom

// safetensors files of torch tensors (see safetensors.h).
#include "core/safetensors.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/statusor.h"

#include "core/fs.h"
#include "core/safetensors_header.h"
#include "core/status.h"

namespace loom {
namespace {

absl::StatusOr<std::string> DtypeName(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return std::string("F32");
    case torch::kFloat16: return std::string("F16");
    case torch::kBFloat16: return std::string("BF16");
    case torch::kFloat64: return std::string("F64");
    case torch::kInt64: return std::string("I64");
    case torch::kInt32: return std::string("I32");
    case torch::kUInt8: return std::string("U8");
    case torch::kBool: return std::string("BOOL");
    default: return absl::InvalidArgumentError(std::string("no safetensors dtype for ") + c10::toString(t));
  }
}

absl::StatusOr<torch::ScalarType> DtypeOf(const std::string& name) {
  static const std::map<std::string, torch::ScalarType> types = {
      {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16}, {"F64", torch::kFloat64},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},     {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};
  const auto it = types.find(name);
  if (it == types.end()) return absl::InvalidArgumentError("unsupported dtype '" + name + "'");
  return it->second;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  std::set<std::string> names;
  int64_t offset = 0;
  // Sorted by name: the same tensors always give the same bytes, whatever their order.
  std::vector<const NamedTensor*> sorted;
  for (const NamedTensor& nt : tensors) sorted.push_back(&nt);
  std::sort(sorted.begin(), sorted.end(), [](const NamedTensor* a, const NamedTensor* b) { return a->name < b->name; });
  for (const NamedTensor* item : sorted) {
    const NamedTensor& nt = *item;
    if (nt.name.empty() || nt.name == "__metadata__" || !names.insert(nt.name).second) {
      return absl::InvalidArgumentError("tensor name '" + nt.name + "' is empty, reserved or repeated");
    }
    torch::Tensor t = nt.tensor.detach().to(torch::kCPU).contiguous();
    auto dtype = DtypeName(t.scalar_type());
    if (!dtype.ok()) return dtype.status();
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    nlohmann::ordered_json entry;
    entry["dtype"] = *dtype;
    entry["shape"] = t.sizes().vec();
    entry["data_offsets"] = std::vector<int64_t>{offset, offset + bytes};
    header[nt.name] = entry;
    offset += bytes;
    data.push_back(t);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  std::string out;
  out.reserve(8 + json.size() + static_cast<size_t>(offset));
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  for (const torch::Tensor& t : data) {
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return WriteFileAtomic(path, out);
}

absl::StatusOr<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  // After this every entry's shape, dtype and offsets agree with each other and the file.
  ASSIGN_OR_RETURN(const SafetensorsIndex index, ParseSafetensors(bytes, path));
  std::map<std::string, torch::Tensor> out;
  for (const SafetensorsEntry& e : index.entries) {
    absl::StatusOr<torch::ScalarType> dtype = DtypeOf(e.dtype);
    if (!dtype.ok()) return absl::InvalidArgumentError(path + ": tensor '" + e.name + "': " + MessageOf(dtype.status()));
    torch::Tensor t = torch::empty(e.shape, *dtype);
    if (e.end > e.begin) std::memcpy(t.data_ptr(), bytes.data() + index.data_start + e.begin, e.end - e.begin);
    out[e.name] = std::move(t);
  }
  return out;
}

}  // namespace loom

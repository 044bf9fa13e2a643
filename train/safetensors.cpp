// safetensors writer (see safetensors.h).
#include "train/safetensors.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <set>

#include "absl/status/statusor.h"

#include "core/fs.h"

namespace loom::train {
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

}  // namespace loom::train

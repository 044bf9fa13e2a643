// safetensors files of torch tensors (see safetensors.h).
#include "core/safetensors.h"

#include <zlib.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstdio>
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

constexpr char kCrcPrefix[] = "crc32/";

uint32_t Crc32(const void* data, uint64_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  for (uint64_t done = 0; done < bytes;) {
    const uInt n = static_cast<uInt>(std::min<uint64_t>(bytes - done, 1u << 30));
    crc = crc32(crc, p + done, n);
    done += n;
  }
  return static_cast<uint32_t>(crc);
}

std::string Hex(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof(text), "%08x", v);
  return text;
}

// Checks the recorded CRC-32 of tensor `name` (if any) against its bytes.
absl::Status CheckCrc(const std::string& path, const std::map<std::string, std::string>& metadata,
                      const std::string& name, const void* data, uint64_t bytes) {
  const auto it = metadata.find(kCrcPrefix + name);
  if (it == metadata.end()) return absl::OkStatus();
  if (it->second != Hex(Crc32(data, bytes))) {
    return absl::DataLossError(path + ": tensor '" + name + "' fails its checksum (the file is damaged; restore it "
                               "or use an older copy)");
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> TensorOf(const std::string& path, const SafetensorsEntry& e, const char* bytes) {
  absl::StatusOr<torch::ScalarType> dtype = DtypeOf(e.dtype);
  if (!dtype.ok()) return absl::InvalidArgumentError(path + ": tensor '" + e.name + "': " + MessageOf(dtype.status()));
  torch::Tensor t = torch::empty(e.shape, *dtype);
  if (e.end > e.begin) std::memcpy(t.data_ptr(), bytes, e.end - e.begin);
  return t;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::map<std::string, std::string> meta = metadata;
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
    meta[kCrcPrefix + nt.name] = Hex(Crc32(t.data_ptr(), static_cast<uint64_t>(bytes)));
    data.push_back(t);
  }
  // The metadata first, as readers expect; then the entries in name order.
  nlohmann::ordered_json ordered = nlohmann::ordered_json::object();
  ordered["__metadata__"] = meta;
  for (const auto& item : header.items()) ordered[item.key()] = item.value();
  header = std::move(ordered);
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
    const char* start = bytes.data() + index.data_start + e.begin;
    RETURN_IF_ERROR(CheckCrc(path, index.metadata, e.name, start, e.end - e.begin));
    ASSIGN_OR_RETURN(out[e.name], TensorOf(path, e, start));
  }
  return out;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(path + ": cannot open");
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  std::string first(std::min<uint64_t>(size, 8), '\0');
  in.read(first.data(), static_cast<std::streamsize>(first.size()));
  ASSIGN_OR_RETURN(const uint64_t header, SafetensorsHeaderSize(first, size, path));
  std::string prefix(8 + header, '\0');
  in.seekg(0);
  in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  if (!in) return absl::DataLossError(path + ": cannot read its header");
  SafetensorsFile f;
  f.path_ = path;
  ASSIGN_OR_RETURN(f.index_, ParseSafetensorsHeader(prefix, size, path));
  for (size_t i = 0; i < f.index_.entries.size(); ++i) f.by_name_[f.index_.entries[i].name] = i;
  return f;
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &index_.entries[it->second];
}

absl::StatusOr<torch::Tensor> SafetensorsFile::Read(const std::string& name) const {
  const SafetensorsEntry* e = Find(name);
  if (e == nullptr) return absl::NotFoundError(path_ + ": no tensor '" + name + "'");
  std::ifstream in(path_, std::ios::binary);
  if (!in) return absl::NotFoundError(path_ + ": cannot open");
  std::string bytes(e->end - e->begin, '\0');
  in.seekg(static_cast<std::streamoff>(index_.data_start + e->begin));
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in) return absl::DataLossError(path_ + ": tensor '" + name + "' cannot be read (truncated?)");
  RETURN_IF_ERROR(CheckCrc(path_, index_.metadata, name, bytes.data(), bytes.size()));
  return TensorOf(path_, *e, bytes.data());
}

}  // namespace loom

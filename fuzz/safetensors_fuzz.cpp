// libFuzzer target for ParseSafetensors (built and run by fuzz/run.sh). Any input must be
// refused with a one-line error or accepted with an index whose entries tile the data
// section exactly; an accepted file must survive a write-and-reparse round trip.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>  // defines: ordered_json, to write the round-trip file
#include <set>
#include <string>
#include <string_view>

#include "core/safetensors_header.h"  // defines: ParseSafetensors, ParseSafetensorsHeader

namespace {

constexpr char kWhere[] = "fuzz-input";

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (false)

bool SameIndex(const loom::SafetensorsIndex& a, const loom::SafetensorsIndex& b) {
  if (a.entries.size() != b.entries.size() || a.metadata != b.metadata) return false;
  for (size_t i = 0; i < a.entries.size(); ++i) {
    const loom::SafetensorsEntry& x = a.entries[i];
    const loom::SafetensorsEntry& y = b.entries[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin || x.end != y.end) {
      return false;
    }
  }
  return true;
}

// The file the loom writer would produce for `index` with the same data bytes.
std::string Rewrite(const loom::SafetensorsIndex& index, std::string_view data) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!index.metadata.empty()) header["__metadata__"] = index.metadata;
  for (const loom::SafetensorsEntry& e : index.entries) {
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string json = header.dump();  // throws on invalid UTF-8: the parser must not pass any
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((uint64_t{json.size()} >> (8 * i)) & 0xff));
  return out + json + std::string(data);
}

void CheckAccepted(std::string_view bytes, const loom::SafetensorsIndex& index) {
  FUZZ_CHECK(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  FUZZ_CHECK(n == index.header_size);
  FUZZ_CHECK(index.header_size <= loom::kMaxSafetensorsHeaderBytes);
  FUZZ_CHECK(index.data_start == 8 + index.header_size);
  FUZZ_CHECK(index.data_start <= bytes.size());
  FUZZ_CHECK(bytes[8] == '{');
  const uint64_t data_size = bytes.size() - index.data_start;
  uint64_t covered = 0;
  std::set<std::string> names;
  for (const loom::SafetensorsEntry& e : index.entries) {
    FUZZ_CHECK(!e.name.empty() && e.name != "__metadata__");
    FUZZ_CHECK(names.insert(e.name).second);
    FUZZ_CHECK(e.begin == covered);
    FUZZ_CHECK(e.begin <= e.end && e.end <= data_size);
    const size_t element = loom::SafetensorsDtypeSize(e.dtype);
    FUZZ_CHECK(element > 0);
    unsigned __int128 count = 1;
    for (int64_t d : e.shape) {
      FUZZ_CHECK(d >= 0);
      // Saturate: the parser refuses products past 2^63, so a capped count still compares right.
      count = count * static_cast<uint64_t>(d);
      if (count > (static_cast<unsigned __int128>(1) << 64)) count = static_cast<unsigned __int128>(1) << 64;
    }
    FUZZ_CHECK(count * element == e.end - e.begin);
    covered = e.end;
  }
  FUZZ_CHECK(covered == data_size);

  // The header alone, without the data, gives the same index.
  auto head = loom::ParseSafetensorsHeader(bytes.substr(0, index.data_start), bytes.size(), kWhere);
  FUZZ_CHECK(head.ok());
  FUZZ_CHECK(SameIndex(*head, index));

  // Written back the loom way and read again, nothing changes.
  const std::string again = Rewrite(index, bytes.substr(index.data_start));
  auto reparsed = loom::ParseSafetensors(again, kWhere);
  FUZZ_CHECK(reparsed.ok());
  FUZZ_CHECK(SameIndex(*reparsed, index));
}

void CheckRefused(const absl::Status& status) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kDataLoss || status.code() == absl::StatusCode::kInvalidArgument);
  const std::string_view message(status.message().data(), status.message().size());
  FUZZ_CHECK(message.substr(0, sizeof(kWhere) + 1) == std::string(kWhere) + ": ");
  FUZZ_CHECK(message.find('\n') == std::string_view::npos);
  FUZZ_CHECK(message.size() < 2000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<loom::SafetensorsIndex> index = loom::ParseSafetensors(bytes, kWhere);
  if (index.ok()) {
    CheckAccepted(bytes, *index);
  } else {
    CheckRefused(index.status());
  }
  return 0;
}

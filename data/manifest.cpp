// Reading, checking and writing manifest.json (see manifest.h).
#include "data/manifest.h"

#include <zlib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/fs.h"

namespace loom::data {

std::string Manifest::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = kManifestFormat;
  j["version"] = version();
  j["modality"] = ModalityName(spec.modality);
  j["sample_shape"] = spec.dims();
  j["total"] = total;
  j["has_labels"] = has_labels;
  j["label_names"] = label_names;
  j["source"] = source;
  if (!caches.empty()) {
    j["caches"] = nlohmann::ordered_json::array();
    for (const CacheSpec& c : caches) {
      j["caches"].push_back({{"name", c.name}, {"dtype", "float32"}, {"shape", c.shape}, {"producer", c.producer}});
    }
  }
  j["shards"] = nlohmann::ordered_json::array();
  for (const ShardEntry& s : shards) {
    j["shards"].push_back({{"file", s.file}, {"count", s.count}, {"bytes", s.bytes},
                           {"crc32", s.crc32}});
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestFile;
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(path + ": no manifest; is '" + dir +
                               "' a dataset directory made by 'loom data ...'?");
  }
  std::stringstream text;
  text << in.rdbuf();
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(path + ": " + why);
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("not valid JSON: ") + e.what());
  }
  Manifest m;
  try {
    if (j.at("format").get<std::string>() != kManifestFormat) return bad("format is not loom-shards");
    const int version = j.at("version").get<int>();
    if (version != kShardVersion && version != kCacheShardVersion) {
      return bad("version " + std::to_string(version) + " is not supported (this loom reads " +
                 std::to_string(kShardVersion) + " and " + std::to_string(kCacheShardVersion) + ")");
    }
    if (version == kCacheShardVersion) {
      for (const auto& c : j.at("caches")) {
        CacheSpec spec{c.at("name").get<std::string>(), c.at("shape").get<std::vector<int64_t>>(), {}};
        // Earlier version-2 manifests record one producer for all their caches.
        spec.producer = (c.contains("producer") ? c.at("producer") : j.at("producer")).get<std::map<std::string, std::string>>();
        if (c.at("dtype").get<std::string>() != "float32") return bad("cache '" + spec.name + "' is not float32");
        if (spec.name.empty() || spec.shape.empty() || spec.numel() <= 0 || m.FindCache(spec.name) != nullptr) {
          return bad("cache '" + spec.name + "' has no name, a bad shape or a twin");
        }
        m.caches.push_back(std::move(spec));
      }
      if (m.caches.empty()) return bad("version 2 names no caches");
    }
    if (absl::Status s = ParseModality(j.at("modality").get<std::string>(), &m.spec.modality); !s.ok()) {
      return bad(std::string(s.message()));
    }
    const auto shape = j.at("sample_shape").get<std::vector<int64_t>>();
    const size_t want = m.spec.modality == Modality::kImage ? 3 : 4;
    if (shape.size() != want) return bad("sample_shape has the wrong rank for its modality");
    size_t k = 0;
    if (m.spec.modality == Modality::kVideo) m.spec.frames = static_cast<int>(shape[k++]);
    m.spec.height = static_cast<int>(shape[k++]);
    m.spec.width = static_cast<int>(shape[k++]);
    m.spec.channels = static_cast<int>(shape[k++]);
    if (absl::Status s = m.spec.Validate(); !s.ok()) return bad(std::string(s.message()));
    m.total = j.at("total").get<int64_t>();
    m.has_labels = j.at("has_labels").get<bool>();
    m.label_names = j.at("label_names").get<std::vector<std::string>>();
    m.source = j.value("source", "");
    int64_t sum = 0;
    for (const auto& s : j.at("shards")) {
      ShardEntry e;
      e.file = s.at("file").get<std::string>();
      e.count = s.at("count").get<int64_t>();
      e.bytes = s.at("bytes").get<int64_t>();
      e.crc32 = s.at("crc32").get<uint32_t>();
      if (e.file.empty() || e.file.find('/') != std::string::npos || e.file[0] == '.') {
        return bad("shard name '" + e.file + "' must be a plain file name in the directory");
      }
      if (e.count <= 0 || e.bytes <= 0) return bad("shard " + e.file + " has no samples or bytes");
      sum += e.count;
      m.shards.push_back(std::move(e));
    }
    if (sum != m.total) {
      return bad("shard counts add up to " + std::to_string(sum) + ", not the total " +
                 std::to_string(m.total));
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("missing or mistyped field: ") + e.what());
  }
  return m;
}

const CacheSpec* Manifest::FindCache(const std::string& name) const {
  for (const CacheSpec& c : caches) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

int64_t Manifest::cache_values() const {
  int64_t n = 0;
  for (const CacheSpec& c : caches) n += c.numel();
  return n;
}

absl::Status WriteManifest(const std::string& dir, const Manifest& manifest) {
  return WriteFileAtomic(dir + "/" + kManifestFile, manifest.ToJson());
}

absl::Status FileCrc32(const std::string& path, uint32_t* crc, int64_t* bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path + ": cannot open");
  std::vector<char> buffer(1 << 20);
  uLong c = crc32(0L, Z_NULL, 0);
  int64_t total = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    c = crc32(c, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(n));
    total += n;
  }
  *crc = static_cast<uint32_t>(c);
  *bytes = total;
  return absl::OkStatus();
}

}  // namespace loom::data

// Full verification of dataset directories (see inspect.h).
#include "data/inspect.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "data/manifest.h"
#include "data/shard_reader.h"

namespace loom::data {
namespace {
namespace fs = std::filesystem;
}  // namespace

absl::Status InspectDataset(const std::string& dir, InspectReport* report) {
  ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir));
  std::set<std::string> listed;
  for (const ShardEntry& e : manifest.shards) listed.insert(e.file);
  // Every shard file in the directory must be listed: a stray shard means the
  // manifest and the files disagree.
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".h5" && !listed.count(name)) {
      return absl::InvalidArgumentError(entry.path().string() +
                                        ": shard is not listed in the manifest");
    }
  }
  for (const ShardEntry& e : manifest.shards) {
    const std::string path = (fs::path(dir) / e.file).string();
    if (!fs::exists(path)) return absl::NotFoundError(path + ": listed in the manifest but missing");
    uint32_t crc = 0;
    int64_t bytes = 0;
    RETURN_IF_ERROR(FileCrc32(path, &crc, &bytes));
    if (bytes != e.bytes) {
      return absl::DataLossError(path + ": " + std::to_string(bytes) + " bytes, the manifest says " +
                                 std::to_string(e.bytes) + " (truncated or replaced)");
    }
    // The whole-file checksum comes first: it catches damage anywhere (metadata too)
    // before HDF5 parses the file, which is not hardened against corrupt metadata.
    if (crc != e.crc32) {
      return absl::DataLossError(path + ": file checksum differs from the manifest (damaged; "
                                 "re-create or restore it)");
    }
    ASSIGN_OR_RETURN(auto reader, ShardReader::Open(path, &manifest.spec, manifest.caches));
    if (reader->size() != e.count) {
      return absl::DataLossError(path + ": " + std::to_string(reader->size()) +
                                 " samples, the manifest says " + std::to_string(e.count));
    }
    if (reader->has_labels() != manifest.has_labels) {
      return absl::InvalidArgumentError(path + ": labels present/absent unlike the manifest says");
    }
    Sample sample;
    for (int64_t i = 0; i < reader->size(); ++i) RETURN_IF_ERROR(reader->Read(i, &sample));
    report->shards += 1;
    report->samples += reader->size();
    report->bytes += bytes;
  }
  report->datasets += 1;
  return absl::OkStatus();
}

absl::StatusOr<InspectReport> Inspect(const std::string& path) {
  InspectReport report;
  if (!fs::is_directory(path)) return absl::NotFoundError(path + ": no such directory");
  if (fs::exists(fs::path(path) / kManifestFile)) {
    RETURN_IF_ERROR(InspectDataset(path, &report));
    return report;
  }
  std::vector<std::string> dirs;
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.is_directory() && fs::exists(entry.path() / kManifestFile)) {
      dirs.push_back(entry.path().string());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) {
    return absl::NotFoundError(path + ": no manifest.json here or in its subdirectories");
  }
  for (const std::string& d : dirs) RETURN_IF_ERROR(InspectDataset(d, &report));
  return report;
}

}  // namespace loom::data

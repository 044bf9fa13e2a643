// Removal of a failed run's shard files (see output_guard.h).
#include "data/ingest/output_guard.h"

#include <filesystem>
#include <string_view>

#include "core/log.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool Exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

std::set<std::string> ShardFiles(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (EndsWith(name, ".h5") || EndsWith(name, ".h5.tmp")) names.insert(name);
  }
  return names;
}

}  // namespace

OutputGuard::OutputGuard(std::string dir)
    : dir_(std::move(dir)), existed_(Exists(dir_)), before_(ShardFiles(dir_)) {}

OutputGuard::~OutputGuard() {
  if (committed_) return;
  for (const std::string& name : ShardFiles(dir_)) {
    if (before_.count(name)) continue;
    std::error_code ec;
    fs::remove(fs::path(dir_) / name, ec);
    if (ec) {
      log::Warning() << "cannot remove partial shard " << dir_ << "/" << name << ": "
                     << ec.message();
    }
  }
  std::error_code ec;
  if (!existed_ && fs::is_empty(dir_, ec) && !ec) fs::remove(dir_, ec);
}

}  // namespace loom::data

// SHA-256 of files and strings (OpenSSL's libcrypto), as lowercase hex: the content
// hashes that identify exports and the caches made from them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

// Streams the files' bytes in order, then `extra`, through one SHA-256.
absl::StatusOr<std::string> Sha256OfFiles(const std::vector<std::string>& paths, std::string_view extra = {});
std::string Sha256(std::string_view bytes);

}  // namespace loom

// YAML file reading and override parsing for config loading (see load.h).
#include "core/config/load.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"

namespace loom::config {
namespace {

bool IsKeyName(const std::string& part) {
  if (part.empty()) return false;
  for (char c : part) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<Override> ParseOverride(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError("command line override '" + text +
                                      "' is not KEY=VALUE (example: optim.lr=1e-4)");
  }
  Override o;
  o.text = text;
  o.key = text.substr(0, eq);
  for (const auto& part : absl::StrSplit(o.key, '.')) {
    if (!IsKeyName(std::string(part))) {
      return absl::InvalidArgumentError("command line override '" + text + "': '" + o.key +
                                        "' is not a dotted key path (example: optim.lr)");
    }
  }
  const std::string value = text.substr(eq + 1);
  try {
    o.value = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError("command line override '" + text +
                                      "': the value is not valid YAML: " + e.msg);
  }
  return o;
}

absl::StatusOr<YAML::Node> ParseYaml(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                      std::to_string(e.mark.column + 1) +
                                      ": malformed YAML: " + e.msg);
  }
  if (root && !root.IsNull() && !root.IsMap()) {
    return absl::InvalidArgumentError(name + ": the top level must be a mapping of sections " +
                                      "(run:, data:, ...), got " + DescribeNode(root));
  }
  return root;
}

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError("cannot read config '" + path + "': " + std::strerror(errno) +
                               " (check the path)");
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseYaml(buffer.str(), path);
}

YAML::Node NestOverride(const Override& o) {
  std::vector<std::string> parts = absl::StrSplit(o.key, '.');
  YAML::Node node = o.value;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = node;
    node.reset(parent);  // rebinds; operator= would overwrite the shared node's content
  }
  return node;
}

}  // namespace loom::config

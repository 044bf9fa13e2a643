// Loading a typed config: a YAML file, then dotted command-line overrides
// ("optim.lr=1e-4"), then cross-field checks; and writing the resolved config back
// as YAML. Every error names the file and line (or the override) and the key path.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/schema.h"

namespace loom::config {

// One "a.b.c=value" override: the key path and its value parsed as YAML.
struct Override {
  std::string text;
  std::string key;  // "a.b.c"
  YAML::Node value;
};

absl::StatusOr<Override> ParseOverride(const std::string& text);

// Reads and parses a YAML file; the root must be a mapping (or empty).
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);

// Parses YAML text; `name` stands for the file in error messages.
absl::StatusOr<YAML::Node> ParseYaml(const std::string& text, const std::string& name);

// {a: {b: {c: value}}} for the override "a.b.c=value".
YAML::Node NestOverride(const Override& o);

// Decodes `root` (from `file`) into a T, applies `overrides` in order, then runs the
// cross-field checks.
template <Section T>
absl::StatusOr<T> Decode(const YAML::Node& root, const std::string& file,
                         const std::vector<std::string>& overrides) {
  std::vector<std::string> keys;
  ListSectionKeys<T>("", &keys);
  const Source file_source{file, ""};
  const Context ctx(&file_source, &keys);
  T obj{};
  RETURN_IF_ERROR(DecodeSection(root, obj, ctx));
  for (const std::string& text : overrides) {
    ASSIGN_OR_RETURN(Override o, ParseOverride(text));
    const Source source{"", text};
    const Context octx(&source, &keys);
    if (std::find(keys.begin(), keys.end(), o.key) == keys.end()) {
      return absl::InvalidArgumentError(octx.Where(nullptr) + ": " +
                                        UnknownKeyMessage(o.key, {}, &keys));
    }
    RETURN_IF_ERROR(DecodeSection(NestOverride(o), obj, octx));
  }
  RETURN_IF_ERROR(CheckSection(obj, ctx));
  return obj;
}

template <Section T>
absl::StatusOr<T> LoadFile(const std::string& path, const std::vector<std::string>& overrides) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  return Decode<T>(root, path, overrides);
}

template <Section T>
absl::StatusOr<T> LoadString(const std::string& text, const std::string& name,
                             const std::vector<std::string>& overrides = {}) {
  ASSIGN_OR_RETURN(YAML::Node root, ParseYaml(text, name));
  return Decode<T>(root, name, overrides);
}

// The resolved config as YAML; with `docs`, each value carries its doc as a comment.
template <Section T>
std::string ToYaml(const T& obj, bool docs = true) {
  YAML::Emitter out;
  out.SetIndent(2);
  EncodeSection(out, obj, docs);
  return std::string(out.c_str()) + "\n";
}

// Every key with its default and doc: rows of {key, default, doc}. Tagged sections list
// the keys of the kind chosen in `defaults`.
template <Section T>
std::vector<std::array<std::string, 3>> KeyTable(const T& defaults = T{}) {
  std::vector<std::array<std::string, 3>> rows;
  ListSectionDocs<T>("", defaults, &rows);
  return rows;
}

}  // namespace loom::config

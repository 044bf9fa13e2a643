// Non-template parts of the config schema: contexts, located errors, suggestions and
// the scalar codecs (see schema.h).
#include "core/config/schema.h"

#include "core/config/tagged.h"

#include <cmath>
#include <cstdlib>

namespace loom::config {
namespace {

// The last component of a dotted path: "optim.lr" -> "lr".
std::string LastComponent(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

}  // namespace

Context Context::Child(const std::string& key) const {
  Context c = *this;
  c.path_ = path_.empty() ? key : path_ + "." + key;
  return c;
}

Context Context::Index(size_t i) const {
  Context c = *this;
  c.path_ = path_ + "[" + std::to_string(i) + "]";
  return c;
}

std::string Context::Where(const YAML::Node* node) const {
  if (source_ == nullptr) return "config";
  if (!source_->override_text.empty()) {
    return "command line override '" + source_->override_text + "'";
  }
  std::string where = source_->file.empty() ? "config" : source_->file;
  if (node != nullptr && node->Mark().line >= 0) {
    where += ":" + std::to_string(node->Mark().line + 1) + ":" +
             std::to_string(node->Mark().column + 1);
  }
  return where;
}

absl::Status Context::Error(const YAML::Node* node, const std::string& message) const {
  std::string text = Where(node) + ": ";
  if (!path_.empty()) text += path_ + ": ";
  text += message;
  return absl::InvalidArgumentError(text);
}

absl::Status Context::UnknownKey(const YAML::Node& key_node, const std::string& key,
                                 const std::vector<std::string>& valid) const {
  const std::string full = Child(key).path();
  return absl::InvalidArgumentError(Where(&key_node) + ": " +
                                    UnknownKeyMessage(full, valid, all_keys_));
}

std::string UnknownKeyMessage(const std::string& full, const std::vector<std::string>& section,
                              const std::vector<std::string>* all_keys) {
  std::string message = "unknown key '" + full + "'";
  std::string hint;
  if (all_keys != nullptr) {
    std::string nearest = NearestName(full, *all_keys);
    if (nearest.empty()) {
      // The right name in the wrong section: "train.lr" -> "optim.lr".
      const std::string last = LastComponent(full);
      for (const std::string& k : *all_keys) {
        if (LastComponent(k) == last) {
          nearest = k;
          break;
        }
      }
    }
    if (!nearest.empty()) hint = " (did you mean '" + nearest + "'?)";
  }
  if (hint.empty() && !section.empty()) hint = "; valid keys here: " + Join(section, ", ");
  return message + hint;
}

std::string DescribeNode(const YAML::Node& node) {
  if (!node || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

absl::Status Codec<bool>::Decode(const YAML::Node& n, bool* v, const Context& ctx) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") {
      *v = true;
      return absl::OkStatus();
    }
    if (s == "false" || s == "False" || s == "FALSE") {
      *v = false;
      return absl::OkStatus();
    }
  }
  return ctx.Error(&n, "expected true or false, got " + DescribeNode(n));
}

absl::Status Codec<int64_t>::Decode(const YAML::Node& n, int64_t* v, const Context& ctx) {
  if (n.IsScalar()) {
    try {
      *v = n.as<int64_t>();
      return absl::OkStatus();
    } catch (const YAML::Exception&) {
    }
  }
  return ctx.Error(&n, "expected an integer, got " + DescribeNode(n));
}

absl::Status Codec<int>::Decode(const YAML::Node& n, int* v, const Context& ctx) {
  if (n.IsScalar()) {
    try {
      *v = n.as<int>();
      return absl::OkStatus();
    } catch (const YAML::Exception&) {
    }
  }
  return ctx.Error(&n, "expected an integer (32-bit), got " + DescribeNode(n));
}

absl::Status Codec<double>::Decode(const YAML::Node& n, double* v, const Context& ctx) {
  if (n.IsScalar()) {
    try {
      const double value = n.as<double>();
      if (std::isfinite(value)) {
        *v = value;
        return absl::OkStatus();
      }
    } catch (const YAML::Exception&) {
    }
  }
  return ctx.Error(&n, "expected a finite number, got " + DescribeNode(n));
}

absl::Status Codec<std::string>::Decode(const YAML::Node& n, std::string* v, const Context& ctx) {
  if (!n.IsScalar()) return ctx.Error(&n, "expected a string, got " + DescribeNode(n));
  *v = n.Scalar();
  return absl::OkStatus();
}

void Codec<std::string>::Encode(YAML::Emitter& out, const std::string& v) {
  // Quote what a YAML reader would otherwise take for a number, bool or null.
  bool looks_typed = v.empty() || v == "true" || v == "false" || v == "null" || v == "~";
  if (!looks_typed) {
    char* end = nullptr;
    std::strtod(v.c_str(), &end);
    looks_typed = end != nullptr && *end == '\0';
  }
  if (looks_typed) {
    out << YAML::DoubleQuoted << v;
  } else {
    out << v;
  }
}

Rule<std::string> OneOf(std::vector<std::string> choices) {
  return [choices](const std::string& v) -> std::string {
    for (const auto& c : choices) {
      if (c == v) return "";
    }
    std::vector<std::string> quoted;
    for (const auto& c : choices) quoted.push_back("'" + c + "'");
    return "must be one of " + Join(quoted, ", ") + DidYouMean(v, choices);
  };
}

std::string KindNames(const std::vector<KindInfo>& kinds) {
  std::vector<std::string> quoted;
  for (const KindInfo& k : kinds) quoted.push_back("'" + k.name + "'");
  return "one of " + Join(quoted, ", ");
}

Rule<std::string> NonEmpty() {
  return [](const std::string& v) -> std::string { return v.empty() ? "must not be empty" : ""; };
}

}  // namespace loom::config

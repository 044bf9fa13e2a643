// Typed configuration sections. Each Options struct describes its fields once, in a
// static Describe(), with name, default (the member initialiser), one-line doc and
// validation rules; decoding YAML with located errors, checking, emitting the resolved
// config and listing keys all come from that description.
//
//   struct OptimOptions {
//     double lr = 3e-4;
//     static void Describe(config::Fields<OptimOptions>& f) {
//       f.Add("lr", &OptimOptions::lr, "peak learning rate").Rule(config::Positive());
//     }
//   };
#pragma once

#include <yaml-cpp/yaml.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/status.h"
#include "core/strings.h"

namespace loom::config {

template <class T>
class Fields;

// A section type is a struct with `static void Describe(Fields<T>&)`.
template <class T>
concept Section = requires(Fields<T>& f) { T::Describe(f); };

// Where the YAML being decoded came from: a file, or one command-line override.
struct Source {
  std::string file;           // the YAML file's path ("" for an override)
  std::string override_text;  // "optim.lr=1e-4" for an override
};

// The position of decoding: the dotted key path and where its text came from.
class Context {
 public:
  Context(const Source* source, const std::vector<std::string>* all_keys)
      : source_(source), all_keys_(all_keys) {}

  Context Child(const std::string& key) const;
  Context Index(size_t i) const;
  const std::string& path() const { return path_; }

  // "cfg.yaml:3:7", "cfg.yaml" (no node) or "command line override 'a.b=1'".
  std::string Where(const YAML::Node* node) const;

  // InvalidArgument "<where>: <path>: <message>".
  absl::Status Error(const YAML::Node* node, const std::string& message) const;

  // The error for a key that is not in `valid` (this section's keys).
  absl::Status UnknownKey(const YAML::Node& key_node, const std::string& key,
                          const std::vector<std::string>& valid) const;

 private:
  const Source* source_;
  const std::vector<std::string>* all_keys_;  // every dotted key, for suggestions
  std::string path_;
};

// "unknown key 'a.b' (did you mean 'a.c'?)": the nearest of all dotted keys, else
// the same name in another section, else the valid keys of this section.
std::string UnknownKeyMessage(const std::string& full, const std::vector<std::string>& section,
                              const std::vector<std::string>* all_keys);

// "a mapping", "a list", "'abc'" or "nothing": what a node holds, for messages.
std::string DescribeNode(const YAML::Node& node);

// ---- value codecs -------------------------------------------------------------------
// Codec<V> decodes one YAML node into V (strictly: no silent conversions), encodes V,
// and formats it for messages.
template <class V>
struct Codec;

template <>
struct Codec<bool> {
  static absl::Status Decode(const YAML::Node& n, bool* v, const Context& ctx);
  static void Encode(YAML::Emitter& out, const bool& v) { out << (v ? "true" : "false"); }
  static std::string Format(const bool& v) { return v ? "true" : "false"; }
};

template <>
struct Codec<int64_t> {
  static absl::Status Decode(const YAML::Node& n, int64_t* v, const Context& ctx);
  static void Encode(YAML::Emitter& out, const int64_t& v) { out << v; }
  static std::string Format(const int64_t& v) { return std::to_string(v); }
};

template <>
struct Codec<int> {
  static absl::Status Decode(const YAML::Node& n, int* v, const Context& ctx);
  static void Encode(YAML::Emitter& out, const int& v) { out << v; }
  static std::string Format(const int& v) { return std::to_string(v); }
};

template <>
struct Codec<double> {
  static absl::Status Decode(const YAML::Node& n, double* v, const Context& ctx);
  static void Encode(YAML::Emitter& out, const double& v) { out << FormatDouble(v); }
  static std::string Format(const double& v) { return FormatDouble(v); }
};

template <>
struct Codec<std::string> {
  static absl::Status Decode(const YAML::Node& n, std::string* v, const Context& ctx);
  static void Encode(YAML::Emitter& out, const std::string& v);
  static std::string Format(const std::string& v) { return "'" + v + "'"; }
};

template <class E>
struct Codec<std::vector<E>> {
  static absl::Status Decode(const YAML::Node& n, std::vector<E>* v, const Context& ctx) {
    if (!n.IsSequence()) return ctx.Error(&n, "expected a list, got " + DescribeNode(n));
    std::vector<E> items(n.size());
    for (size_t i = 0; i < n.size(); ++i) {
      RETURN_IF_ERROR(Codec<E>::Decode(n[i], &items[i], ctx.Index(i)));
    }
    *v = std::move(items);
    return absl::OkStatus();
  }
  static void Encode(YAML::Emitter& out, const std::vector<E>& v) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const E& e : v) Codec<E>::Encode(out, e);
    out << YAML::EndSeq;
  }
  static std::string Format(const std::vector<E>& v) {
    std::vector<std::string> parts;
    for (const E& e : v) parts.push_back(Codec<E>::Format(e));
    return "[" + Join(parts, ", ") + "]";
  }
};

template <class E, size_t N>
struct Codec<std::array<E, N>> {
  static absl::Status Decode(const YAML::Node& n, std::array<E, N>* v, const Context& ctx) {
    if (!n.IsSequence() || n.size() != N) {
      return ctx.Error(&n, "expected a list of " + std::to_string(N) + " values, got " +
                               DescribeNode(n));
    }
    std::array<E, N> items{};
    for (size_t i = 0; i < N; ++i) {
      RETURN_IF_ERROR(Codec<E>::Decode(n[i], &items[i], ctx.Index(i)));
    }
    *v = items;
    return absl::OkStatus();
  }
  static void Encode(YAML::Emitter& out, const std::array<E, N>& v) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const E& e : v) Codec<E>::Encode(out, e);
    out << YAML::EndSeq;
  }
  static std::string Format(const std::array<E, N>& v) {
    std::vector<std::string> parts;
    for (const E& e : v) parts.push_back(Codec<E>::Format(e));
    return "[" + Join(parts, ", ") + "]";
  }
};

// ---- rules ----------------------------------------------------------------------------
// A rule returns "" when a value is acceptable, else what is wrong ("must be > 0").
template <class V>
using Rule = std::function<std::string(const V&)>;

// A rule bound for messages: "4" for integral values, else the exact double.
inline std::string FormatBound(double x) {
  if (x == static_cast<double>(static_cast<long long>(x))) {
    return std::to_string(static_cast<long long>(x));
  }
  return FormatDouble(x);
}

inline auto Positive() {
  return [](const auto& v) -> std::string { return v > 0 ? "" : "must be > 0"; };
}
inline auto AtLeast(double lo) {
  return [lo](const auto& v) -> std::string {
    return v >= lo ? "" : "must be >= " + FormatBound(lo);
  };
}
// lo <= v <= hi.
inline auto Between(double lo, double hi) {
  return [lo, hi](const auto& v) -> std::string {
    return (v >= lo && v <= hi) ? ""
                                : "must be in [" + FormatBound(lo) + ", " + FormatBound(hi) + "]";
  };
}
// lo <= v < hi, for rates such as dropout.
inline auto InHalfOpen(double lo, double hi) {
  return [lo, hi](const auto& v) -> std::string {
    return (v >= lo && v < hi) ? ""
                               : "must be in [" + FormatBound(lo) + ", " + FormatBound(hi) + ")";
  };
}
Rule<std::string> OneOf(std::vector<std::string> choices);
Rule<std::string> NonEmpty();
// Every element of a list or array satisfies `rule`.
template <class R>
auto Each(R rule) {
  return [rule](const auto& values) -> std::string {
    for (const auto& v : values) {
      std::string problem = rule(v);
      if (!problem.empty()) return "must contain only values " + problem.substr(problem.find("be ") + 3);
    }
    return "";
  };
}

// ---- fields ---------------------------------------------------------------------------
template <class T>
class FieldBase {
 public:
  FieldBase(std::string name, std::string doc) : name_(std::move(name)), doc_(std::move(doc)) {}
  virtual ~FieldBase() = default;
  const std::string& name() const { return name_; }
  const std::string& doc() const { return doc_; }

  virtual absl::Status Decode(const YAML::Node& node, T& obj, const Context& ctx) const = 0;
  // Cross-field checks of nested sections (values were checked while decoding).
  virtual absl::Status Check(const T& obj, const Context& ctx) const { return absl::OkStatus(); }
  virtual void Encode(YAML::Emitter& out, const T& obj, bool docs) const = 0;
  virtual void ListKeys(const std::string& prefix, std::vector<std::string>* keys) const {
    keys->push_back(prefix + name_);
  }
  virtual void ListDocs(const std::string& prefix, const T& defaults,
                        std::vector<std::array<std::string, 3>>* rows) const = 0;

 private:
  std::string name_;
  std::string doc_;
};

template <class T, class V>
class ValueField : public FieldBase<T> {
 public:
  ValueField(std::string name, V T::*member, std::string doc)
      : FieldBase<T>(std::move(name), std::move(doc)), member_(member) {}

  // Adds a validation rule; the field's value must satisfy all of them.
  template <class R>
  ValueField& Rule(R rule) {
    rules_.emplace_back(std::move(rule));
    return *this;
  }

  absl::Status Decode(const YAML::Node& node, T& obj, const Context& ctx) const override {
    V value{};
    RETURN_IF_ERROR(Codec<V>::Decode(node, &value, ctx));
    for (const auto& rule : rules_) {
      const std::string problem = rule(value);
      if (!problem.empty()) {
        return ctx.Error(&node, "got " + Codec<V>::Format(value) + ", but it " + problem);
      }
    }
    obj.*member_ = std::move(value);
    return absl::OkStatus();
  }

  void Encode(YAML::Emitter& out, const T& obj, bool docs) const override {
    out << YAML::Key << this->name() << YAML::Value;
    Codec<V>::Encode(out, obj.*member_);
    if (docs) out << YAML::Comment(this->doc());
  }

  void ListDocs(const std::string& prefix, const T& defaults,
                std::vector<std::array<std::string, 3>>* rows) const override {
    rows->push_back({prefix + this->name(), Codec<V>::Format(defaults.*member_), this->doc()});
  }

 private:
  V T::*member_;
  std::vector<std::function<std::string(const V&)>> rules_;
};

template <class T>
absl::Status DecodeSection(const YAML::Node& node, T& obj, const Context& ctx);
template <class T>
absl::Status CheckSection(const T& obj, const Context& ctx);
template <class T>
void EncodeSection(YAML::Emitter& out, const T& obj, bool docs);
template <class T>
void ListSectionKeys(const std::string& prefix, std::vector<std::string>* keys);
template <class T>
void ListSectionDocs(const std::string& prefix, const T& defaults,
                     std::vector<std::array<std::string, 3>>* rows);

template <class T, class S>
class SectionField : public FieldBase<T> {
 public:
  SectionField(std::string name, S T::*member, std::string doc)
      : FieldBase<T>(std::move(name), std::move(doc)), member_(member) {}

  absl::Status Decode(const YAML::Node& node, T& obj, const Context& ctx) const override {
    return DecodeSection(node, obj.*member_, ctx);
  }
  absl::Status Check(const T& obj, const Context& ctx) const override {
    return CheckSection(obj.*member_, ctx);
  }
  void Encode(YAML::Emitter& out, const T& obj, bool docs) const override {
    out << YAML::Key << this->name() << YAML::Value;
    EncodeSection(out, obj.*member_, docs);
  }
  void ListKeys(const std::string& prefix, std::vector<std::string>* keys) const override {
    keys->push_back(prefix + this->name());
    ListSectionKeys<S>(prefix + this->name() + ".", keys);
  }
  void ListDocs(const std::string& prefix, const T& defaults,
                std::vector<std::array<std::string, 3>>* rows) const override {
    ListSectionDocs(prefix + this->name() + ".", defaults.*member_, rows);
  }

 private:
  S T::*member_;
};

// The description of section type T: its fields in order and its cross-field checks.
template <class T>
class Fields {
 public:
  // Adds a field: a nested section when V is a Section, else a value.
  template <class V>
  auto& Add(std::string name, V T::*member, std::string doc) {
    if constexpr (Section<V>) {
      auto field = std::make_unique<SectionField<T, V>>(std::move(name), member, std::move(doc));
      auto& ref = *field;
      fields_.push_back(std::move(field));
      return ref;
    } else {
      auto field = std::make_unique<ValueField<T, V>>(std::move(name), member, std::move(doc));
      auto& ref = *field;
      fields_.push_back(std::move(field));
      return ref;
    }
  }

  // Adds a field built elsewhere (tagged sections: core/config/tagged.h).
  FieldBase<T>& AddField(std::unique_ptr<FieldBase<T>> field) {
    fields_.push_back(std::move(field));
    return *fields_.back();
  }

  // A check across fields, run after all values are known: returns "" or the problem.
  void Check(std::function<std::string(const T&)> check) { checks_.push_back(std::move(check)); }

  const FieldBase<T>* Find(const std::string& name) const {
    for (const auto& f : fields_) {
      if (f->name() == name) return f.get();
    }
    return nullptr;
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& f : fields_) names.push_back(f->name());
    return names;
  }
  const std::vector<std::unique_ptr<FieldBase<T>>>& fields() const { return fields_; }
  const std::vector<std::function<std::string(const T&)>>& checks() const { return checks_; }

 private:
  std::vector<std::unique_ptr<FieldBase<T>>> fields_;
  std::vector<std::function<std::string(const T&)>> checks_;
};

template <class T>
const Fields<T>& SchemaOf() {
  static const Fields<T>* fields = [] {
    auto* f = new Fields<T>();
    T::Describe(*f);
    return f;
  }();
  return *fields;
}

template <class T>
absl::Status DecodeSection(const YAML::Node& node, T& obj, const Context& ctx) {
  if (!node || node.IsNull()) return absl::OkStatus();  // an empty section keeps defaults
  if (!node.IsMap()) {
    return ctx.Error(&node, "expected a section (keys: " + Join(SchemaOf<T>().Names(), ", ") +
                                "), got " + DescribeNode(node));
  }
  const Fields<T>& fields = SchemaOf<T>();
  std::set<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) return ctx.Error(&kv.first, "keys must be plain names");
    const std::string key = kv.first.Scalar();
    if (!seen.insert(key).second) {
      return ctx.Child(key).Error(&kv.first, "key given twice; keep one");
    }
    const FieldBase<T>* field = fields.Find(key);
    if (field == nullptr) return ctx.UnknownKey(kv.first, key, fields.Names());
    RETURN_IF_ERROR(field->Decode(kv.second, obj, ctx.Child(key)));
  }
  return absl::OkStatus();
}

template <class T>
absl::Status CheckSection(const T& obj, const Context& ctx) {
  const Fields<T>& fields = SchemaOf<T>();
  for (const auto& f : fields.fields()) RETURN_IF_ERROR(f->Check(obj, ctx.Child(f->name())));
  for (const auto& check : fields.checks()) {
    const std::string problem = check(obj);
    if (!problem.empty()) return ctx.Error(nullptr, problem);
  }
  return absl::OkStatus();
}

template <class T>
void EncodeSection(YAML::Emitter& out, const T& obj, bool docs) {
  out << YAML::BeginMap;
  for (const auto& f : SchemaOf<T>().fields()) f->Encode(out, obj, docs);
  out << YAML::EndMap;
}

template <class T>
void ListSectionKeys(const std::string& prefix, std::vector<std::string>* keys) {
  for (const auto& f : SchemaOf<T>().fields()) f->ListKeys(prefix, keys);
}

template <class T>
void ListSectionDocs(const std::string& prefix, const T& defaults,
                     std::vector<std::array<std::string, 3>>* rows) {
  for (const auto& f : SchemaOf<T>().fields()) f->ListDocs(prefix, defaults, rows);
}

}  // namespace loom::config

// Tagged sections: a section whose keys depend on its `kind` key, as `stage: {kind: vae,
// ...}` selects the options of one kind. Each kind is a Section type registered in a list
// (an explicit list, never static initialisers); decoding, checking, printing and key
// listings come from that kind's own Describe(), exactly as for plain sections.
//
//   std::vector<KindInfo> Kinds() { return {KindOf<DiTOptions>("dit", "..."), ...}; }
//   AddTagged(f, "stage", &Experiment::stage, "what is trained", Kinds);
//   const DiTOptions* dit = experiment.stage.As<DiTOptions>();   // null for another kind
#pragma once

#include <yaml-cpp/yaml.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/config/schema.h"

namespace loom::config {

// The options of one kind, type-erased.
class KindOptions {
 public:
  virtual ~KindOptions() = default;
  virtual std::unique_ptr<KindOptions> Clone() const = 0;
  // Decodes the keys of `node` other than `kind` into the options.
  virtual absl::Status Decode(const YAML::Node& node, const Context& ctx) = 0;
  virtual absl::Status Check(const Context& ctx) const = 0;
  // Emits the kind's keys (inside the tagged section's mapping).
  virtual void EncodeFields(YAML::Emitter& out, bool docs) const = 0;
  virtual std::vector<std::string> Names() const = 0;
  virtual void ListKeys(const std::string& prefix, std::vector<std::string>* keys) const = 0;
  virtual void ListDocs(const std::string& prefix, std::vector<std::array<std::string, 3>>* rows) const = 0;
};

template <Section S>
class KindOptionsOf : public KindOptions {
 public:
  std::unique_ptr<KindOptions> Clone() const override { return std::make_unique<KindOptionsOf<S>>(*this); }
  absl::Status Decode(const YAML::Node& node, const Context& ctx) override {
    // The same mapping without `kind`: nodes keep their marks, so errors keep their lines.
    YAML::Node rest(YAML::NodeType::Map);
    for (const auto& kv : node) {
      if (!(kv.first.IsScalar() && kv.first.Scalar() == "kind")) rest.force_insert(kv.first, kv.second);
    }
    return DecodeSection(rest, value, ctx);
  }
  absl::Status Check(const Context& ctx) const override { return CheckSection(value, ctx); }
  void EncodeFields(YAML::Emitter& out, bool docs) const override {
    for (const auto& f : SchemaOf<S>().fields()) f->Encode(out, value, docs);
  }
  std::vector<std::string> Names() const override { return SchemaOf<S>().Names(); }
  void ListKeys(const std::string& prefix, std::vector<std::string>* keys) const override {
    ListSectionKeys<S>(prefix, keys);
  }
  void ListDocs(const std::string& prefix, std::vector<std::array<std::string, 3>>* rows) const override {
    ListSectionDocs(prefix, value, rows);
  }

  S value;
};

// A registered kind: its name, a one-line summary and a maker of its default options.
struct KindInfo {
  std::string name;
  std::string summary;
  std::function<std::unique_ptr<KindOptions>()> make;
};

template <Section S>
KindInfo KindOf(std::string name, std::string summary) {
  return {std::move(name), std::move(summary), [] { return std::make_unique<KindOptionsOf<S>>(); }};
}

// The value of a tagged section: the chosen kind and its options (empty kind: none yet).
class Tagged {
 public:
  Tagged() = default;
  Tagged(const Tagged& o) : kind_(o.kind_), options_(o.options_ ? o.options_->Clone() : nullptr) {}
  Tagged& operator=(const Tagged& o) {
    if (this != &o) {
      kind_ = o.kind_;
      options_ = o.options_ ? o.options_->Clone() : nullptr;
    }
    return *this;
  }
  Tagged(Tagged&&) = default;
  Tagged& operator=(Tagged&&) = default;

  const std::string& kind() const { return kind_; }
  // Selects `info`'s kind with its default options.
  void Reset(const KindInfo& info) {
    kind_ = info.name;
    options_ = info.make();
  }
  // The options as kind type S, or null when another kind is chosen.
  template <Section S>
  const S* As() const {
    const auto* box = dynamic_cast<const KindOptionsOf<S>*>(options_.get());
    return box == nullptr ? nullptr : &box->value;
  }
  template <Section S>
  S* As() {
    auto* box = dynamic_cast<KindOptionsOf<S>*>(options_.get());
    return box == nullptr ? nullptr : &box->value;
  }
  KindOptions* options() { return options_.get(); }
  const KindOptions* options() const { return options_.get(); }

 private:
  std::string kind_;
  std::unique_ptr<KindOptions> options_;
};

// "one of 'dit', 'vae'" for messages.
std::string KindNames(const std::vector<KindInfo>& kinds);

template <class T>
class TaggedField : public FieldBase<T> {
 public:
  using KindList = std::function<std::vector<KindInfo>()>;
  TaggedField(std::string name, Tagged T::*member, std::string doc, KindList kinds)
      : FieldBase<T>(std::move(name), std::move(doc)), member_(member), kinds_(std::move(kinds)) {}

  absl::Status Decode(const YAML::Node& node, T& obj, const Context& ctx) const override {
    Tagged& tagged = obj.*member_;
    if (!node || node.IsNull()) return absl::OkStatus();
    if (!node.IsMap()) return ctx.Error(&node, "expected a section with a 'kind' key, got " + DescribeNode(node));
    const std::vector<KindInfo> kinds = kinds_();
    const YAML::Node kind = node["kind"];
    if (kind) {
      const Context kctx = ctx.Child("kind");
      if (!kind.IsScalar()) return kctx.Error(&kind, "expected the name of a kind, got " + DescribeNode(kind));
      const KindInfo* info = Find(kinds, kind.Scalar());
      if (info == nullptr) {
        std::vector<std::string> names;
        for (const KindInfo& k : kinds) names.push_back(k.name);
        return kctx.Error(&kind, "'" + kind.Scalar() + "' is not a kind; " + KindNames(kinds) +
                                     DidYouMean(kind.Scalar(), names));
      }
      if (tagged.kind() != info->name) tagged.Reset(*info);  // another kind starts from its defaults
    }
    if (tagged.options() == nullptr) {
      if (node.size() == 0) return absl::OkStatus();
      return ctx.Error(&node, "choose a kind first (" + ctx.Child("kind").path() + ": " + KindNames(kinds) + ")");
    }
    // Keys of another kind get their own message.
    const std::vector<std::string> mine = tagged.options()->Names();
    for (const auto& kv : node) {
      if (!kv.first.IsScalar() || kv.first.Scalar() == "kind") continue;
      const std::string key = kv.first.Scalar();
      if (std::find(mine.begin(), mine.end(), key) != mine.end()) continue;
      for (const KindInfo& k : kinds) {
        const std::vector<std::string> theirs = k.make()->Names();
        if (std::find(theirs.begin(), theirs.end(), key) != theirs.end()) {
          return ctx.Child(key).Error(&kv.first, "is an option of " + ctx.Child("kind").path() + " '" + k.name +
                                                     "', not of '" + tagged.kind() + "' (keys of '" + tagged.kind() +
                                                     "': " + Join(mine, ", ") + ")");
        }
      }
    }
    return tagged.options()->Decode(node, ctx);
  }

  absl::Status Check(const T& obj, const Context& ctx) const override {
    const Tagged& tagged = obj.*member_;
    if (tagged.options() == nullptr) {
      return ctx.Error(nullptr, "no kind chosen: set " + ctx.Child("kind").path() + " to " + KindNames(kinds_()));
    }
    return tagged.options()->Check(ctx);
  }

  void Encode(YAML::Emitter& out, const T& obj, bool docs) const override {
    const Tagged& tagged = obj.*member_;
    out << YAML::Key << this->name() << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "kind" << YAML::Value;
    Codec<std::string>::Encode(out, tagged.kind());
    if (docs) out << YAML::Comment(this->doc());
    if (tagged.options() != nullptr) tagged.options()->EncodeFields(out, docs);
    out << YAML::EndMap;
  }

  // Every kind's keys: overrides of any kind's key parse, and the decoder says whose it is.
  void ListKeys(const std::string& prefix, std::vector<std::string>* keys) const override {
    const std::string base = prefix + this->name();
    keys->push_back(base);
    keys->push_back(base + ".kind");
    for (const KindInfo& k : kinds_()) {
      std::vector<std::string> theirs;
      k.make()->ListKeys(base + ".", &theirs);
      for (const std::string& key : theirs) {
        if (std::find(keys->begin(), keys->end(), key) == keys->end()) keys->push_back(key);
      }
    }
  }

  // The kind row, then the keys of the kind chosen in `defaults` (none when unchosen).
  void ListDocs(const std::string& prefix, const T& defaults,
                std::vector<std::array<std::string, 3>>* rows) const override {
    const Tagged& tagged = defaults.*member_;
    std::string doc = this->doc() + ": " + KindNames(kinds_());
    rows->push_back({prefix + this->name() + ".kind", tagged.kind().empty() ? "(required)" : "'" + tagged.kind() + "'",
                     doc});
    if (tagged.options() != nullptr) tagged.options()->ListDocs(prefix + this->name() + ".", rows);
  }

 private:
  static const KindInfo* Find(const std::vector<KindInfo>& kinds, const std::string& name) {
    for (const KindInfo& k : kinds) {
      if (k.name == name) return &k;
    }
    return nullptr;
  }

  Tagged T::*member_;
  KindList kinds_;
};

template <class T>
void AddTagged(Fields<T>& fields, std::string name, Tagged T::*member, std::string doc,
               typename TaggedField<T>::KindList kinds) {
  fields.AddField(std::make_unique<TaggedField<T>>(std::move(name), member, std::move(doc), std::move(kinds)));
}

}  // namespace loom::config

// Config differences on resume (see config_diff.h).
#include "train/config_diff.h"

#include <yaml-cpp/yaml.h>

#include <map>

namespace loom::train {
namespace {

// Leaves as dotted key -> their YAML text (lists as one value).
void Flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>* out) {
  if (node.IsMap()) {
    for (const auto& kv : node) Flatten(kv.second, prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar(), out);
    return;
  }
  YAML::Emitter e;
  e << YAML::Flow << node;
  (*out)[prefix] = e.c_str();
}

}  // namespace

absl::StatusOr<std::vector<ConfigChange>> DiffConfigs(const std::string& before_yaml, const std::string& after_yaml) {
  std::map<std::string, std::string> a, b;
  try {
    Flatten(YAML::Load(before_yaml), "", &a);
    Flatten(YAML::Load(after_yaml), "", &b);
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(std::string("a saved config is not valid YAML: ") + e.what());
  }
  std::vector<ConfigChange> changes;
  for (const auto& [key, value] : a) {
    const auto it = b.find(key);
    if (it == b.end()) {
      changes.push_back({key, value, "(absent)"});
    } else if (it->second != value) {
      changes.push_back({key, value, it->second});
    }
  }
  for (const auto& [key, value] : b) {
    if (!a.count(key)) changes.push_back({key, "(absent)", value});
  }
  return changes;
}

bool MayChangeOnResume(const std::string& key) {
  static const char* const kFree[] = {
      "train.steps",        "train.log_every",   "train.sample_every", "train.eval_every",
      "train.checkpoint_every", "train.keep_checkpoints", "train.on_nan", "train.precision",
      "train.tensorboard",
      "optim.",             "dist.",             "data.workers",       "data.prefetch",
      "data.on_error",      "data.max_skipped",  "data.test",          "run.dir",
      "stage.eval.",        "stage.preview_",    "stage.disc.optim.",
  };
  for (const char* free : kFree) {
    const std::string f = free;
    if (f.back() == '.' || f.back() == '_' ? key.rfind(f, 0) == 0 : key == f) return true;
  }
  return false;
}

}  // namespace loom::train

// Importing pretrained text encoders (see import.h).
#include "pipeline/import.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config/load.h"    // LoadString
#include "core/fs.h"             // ReadFile
#include "core/log.h"
#include "core/safetensors.h"    // ReadSafetensors
#include "pipeline/export.h"     // WriteExport
#include "pipeline/model.h"      // LoadedModel, LoadExport
#include "stages/bert_stage.h"   // BertStageOptions
#include "stages/registry.h"     // MakeStage
#include "train/trainables.h"    // LoadWeights

namespace loom::pipeline {
namespace {

namespace fs = std::filesystem;

// Tensors a BertModel checkpoint may hold that the encoder does not use: the pooler,
// pretraining heads, and the position-id buffer.
bool Unused(const std::string& name) {
  for (const char* prefix : {"pooler.", "bert.pooler.", "cls.", "embeddings.position_ids", "bert.embeddings.position_ids"}) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// The stage's options from the checkpoint's config.json (and tokenizer_config.json).
absl::StatusOr<nlohmann::json> StageOptions(const fs::path& dir, const TextEncoderImport& o) {
  const std::string where = (dir / "config.json").string();
  ASSIGN_OR_RETURN(const std::string text, ReadFile((dir / "config.json").string()));
  nlohmann::json c;
  try {
    c = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(where + " is not JSON: " + e.what());
  }
  const std::string type = c.value("model_type", "");
  if (type != "bert") {
    return absl::InvalidArgumentError(where + ": model_type is '" + type + "'; loom imports BERT-family "
                                      "checkpoints (model_type bert, BertModel's layout)");
  }
  if (c.value("hidden_act", "gelu") != "gelu") {
    return absl::InvalidArgumentError(where + ": hidden_act '" + c.value("hidden_act", "") +
                                      "' is not supported; loom's BERT uses the exact GELU ('gelu')");
  }
  if (c.value("position_embedding_type", "absolute") != "absolute") {
    return absl::InvalidArgumentError(where + ": position_embedding_type '" + c.value("position_embedding_type", "") +
                                      "' is not supported; loom's BERT has absolute positions");
  }
  nlohmann::json model;
  try {
    for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "intermediate_size", "max_position_embeddings"}) {
      if (!c.contains(key)) return absl::InvalidArgumentError(where + " has no '" + std::string(key) + "'");
      model[key] = c.at(key).get<int64_t>();
    }
    model["type_vocab_size"] = c.value("type_vocab_size", 2);
    model["layer_norm_eps"] = c.value("layer_norm_eps", 1e-12);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(where + ": " + e.what());
  }
  if (o.max_tokens < 2 || o.max_tokens > model.at("max_position_embeddings").get<int64_t>()) {
    return absl::InvalidArgumentError("--max-tokens " + std::to_string(o.max_tokens) + " must be between 2 ([CLS] and "
                                      "[SEP]) and the checkpoint's " + model.at("max_position_embeddings").dump() +
                                      " positions");
  }
  bool lowercase = true;
  if (fs::exists(dir / "tokenizer_config.json")) {
    const std::string tc_where = (dir / "tokenizer_config.json").string();
    ASSIGN_OR_RETURN(const std::string tc_text, ReadFile((dir / "tokenizer_config.json").string()));
    try {
      const nlohmann::json tc = nlohmann::json::parse(tc_text);
      lowercase = tc.value("do_lower_case", true);
      if (tc.contains("strip_accents") && !tc.at("strip_accents").is_null() &&
          tc.at("strip_accents").get<bool>() != lowercase) {
        return absl::InvalidArgumentError(tc_where + ": strip_accents differs from do_lower_case; loom strips "
                                          "accents exactly when it lower-cases");
      }
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(tc_where + " is damaged: " + e.what());
    }
  }
  return nlohmann::json{{"stage",
                         {{"kind", "bert"},
                          {"model", model},
                          {"max_tokens", o.max_tokens},
                          {"lowercase", lowercase},
                          {"source", fs::absolute(dir).lexically_normal().string()}}}};
}

}  // namespace

absl::StatusOr<ImportReport> ImportTextEncoder(const TextEncoderImport& o) {
  const fs::path dir(o.from);
  if (!fs::is_directory(dir)) return absl::NotFoundError("--from " + o.from + ": no such directory");
  for (const char* file : {"config.json", "vocab.txt", "model.safetensors"}) {
    if (!fs::exists(dir / file)) {
      std::string hint = "a BERT checkpoint directory holds config.json, model.safetensors and vocab.txt";
      if (std::string(file) == "model.safetensors" && fs::exists(dir / "pytorch_model.bin")) {
        hint = "it holds pytorch_model.bin only: save it as safetensors first (loom reads no pickles)";
      }
      return absl::InvalidArgumentError("--from " + o.from + " has no " + file + "; " + hint);
    }
  }
  ASSIGN_OR_RETURN(const nlohmann::json yaml, StageOptions(dir, o));
  // JSON is YAML: the experiment config goes through the same checks as any other.
  ASSIGN_OR_RETURN(train::ExperimentOptions options,
                   config::LoadString<train::ExperimentOptions>(yaml.dump(2), (dir / "config.json").string()));
  ASSIGN_OR_RETURN(const std::string vocab, ReadFile((dir / "vocab.txt").string()));
  stages::StageInputs in;
  in.options = &options.stage;
  in.data = options.data;
  in.assets = {{"vocab.txt", vocab}};
  absl::StatusOr<std::shared_ptr<stages::Stage>> made = stages::MakeStage(in);
  if (!made.ok()) return absl::Status(made.status().code(), o.from + ": " + std::string(made.status().message()));
  std::shared_ptr<stages::Stage> stage = *made;

  // The checkpoint's tensors by the stage's names: "bert." + BertModel's name (a
  // checkpoint of BertFor... prefixes them with "bert." already).
  const std::string weights_path = (dir / "model.safetensors").string();
  ASSIGN_OR_RETURN(auto stored, ReadSafetensors(weights_path));
  std::map<std::string, torch::Tensor> tensors;
  ImportReport report;
  for (auto& [name, t] : stored) {
    if (Unused(name)) {
      ++report.ignored;
      continue;
    }
    const std::string mine = name.rfind("bert.", 0) == 0 ? name : "bert." + name;
    tensors[mine] = t.is_floating_point() ? t.to(torch::kFloat32) : t;
  }
  absl::Status loaded = train::LoadWeights(*stage, tensors, weights_path);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(std::string(loaded.message()) +
                                      " (is it a BertModel checkpoint of the shape its config.json gives?)");
  }
  LoadedModel m;
  m.stage = stage;
  m.options = options;
  m.kind = stage->kind();
  m.source = o.from;
  m.weights = "pretrained";
  RETURN_IF_ERROR(WriteExport(m, o.out, {}));
  ASSIGN_OR_RETURN(LoadedModel written, LoadExport(o.out));  // what a user will load
  report.hash = written.hash;
  for (const auto& p : stage->parameters()) report.parameters += p.numel();
  stages::TextEncoding* text = stage->AsTextEncoding();
  report.width = text->context_dim();
  report.vocab = options.stage.As<stages::BertStageOptions>()->model.vocab_size;
  report.lowercase = options.stage.As<stages::BertStageOptions>()->lowercase;
  return report;
}

}  // namespace loom::pipeline

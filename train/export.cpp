// Loading models for inference and writing exports (see export.h).
#include "train/export.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/config/load.h"
#include "core/fs.h"
#include "core/safetensors.h"
#include "train/checkpoint.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

constexpr const char* kExportFormat = "loom-export";
constexpr int kExportVersion = 1;

absl::StatusOr<std::string> ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path.string() + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::map<std::string, torch::Tensor> ToFloat32(std::map<std::string, torch::Tensor> tensors) {
  for (auto& [name, t] : tensors) {
    if (t.is_floating_point()) t = t.to(torch::kFloat32);
  }
  return tensors;
}

absl::StatusOr<ModelBundle> FromCheckpoint(const fs::path& dir, const std::string& weights) {
  ASSIGN_OR_RETURN(LoadedCheckpoint ck, LoadCheckpoint(dir.string(), /*with_optimizer=*/false));
  ModelBundle b;
  ASSIGN_OR_RETURN(b.options, config::LoadFile<ExperimentOptions>((dir / "config.yaml").string(), {}));
  ASSIGN_OR_RETURN(b.tokenizer_model, ReadAll(dir / "tokenizer.model"));
  b.step = ck.step;
  if (weights == "ema" && !ck.ema.empty()) {
    b.tensors = std::move(ck.ema);
    b.weights = "ema";
  } else {
    b.tensors = std::move(ck.model);
    b.weights = "raw";
  }
  b.source = dir.string();
  return b;
}

absl::StatusOr<ModelBundle> FromExport(const fs::path& dir) {
  ModelBundle b;
  nlohmann::json info;
  try {
    std::ifstream in(dir / "config.json");
    info = nlohmann::json::parse(in);
    if (info.at("format") != kExportFormat || info.at("version") != kExportVersion) {
      return absl::InvalidArgumentError((dir / "config.json").string() + ": not a loom export of version " +
                                        std::to_string(kExportVersion));
    }
    b.step = info.at("step").get<int64_t>();
    b.weights = info.at("weights").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError((dir / "config.json").string() + " is damaged: " + e.what());
  }
  ASSIGN_OR_RETURN(b.options, config::LoadFile<ExperimentOptions>((dir / "config.yaml").string(), {}));
  ASSIGN_OR_RETURN(b.tokenizer_model, ReadAll(dir / "tokenizer.model"));
  ASSIGN_OR_RETURN(auto tensors, ReadSafetensors((dir / "model.safetensors").string()));
  b.tensors = ToFloat32(std::move(tensors));
  b.source = dir.string();
  return b;
}

const char* DtypeName(torch::ScalarType t) {
  switch (t) {
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "fp16";
    default: return "fp32";
  }
}

}  // namespace

std::map<std::string, torch::Tensor> StageTensors(DiTStageImpl& stage) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : stage.named_parameters()) out[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).clone();
  for (const auto& item : stage.named_buffers()) out[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).clone();
  return out;
}

absl::StatusOr<ModelBundle> LoadModel(const std::string& path, const std::string& weights) {
  if (weights != "ema" && weights != "raw") {
    return absl::InvalidArgumentError("weights must be ema or raw, not '" + weights + "'");
  }
  const fs::path dir(path);
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(path + ": no such directory; pass a run (runs/NAME), a checkpoint "
                                      "(runs/NAME/checkpoints/step-N) or an export made by 'loom export'");
  }
  if (fs::exists(dir / "config.json")) return FromExport(dir);  // holds one set of weights
  if (fs::exists(dir / "state.json")) return FromCheckpoint(dir, weights);
  if (fs::exists(dir / "config.yaml")) {
    const std::optional<std::string> latest = LatestCheckpointDir(path);
    if (!latest) return absl::NotFoundError(path + " has no complete checkpoint yet; train it first");
    return FromCheckpoint(*latest, weights);
  }
  return absl::InvalidArgumentError(path + " is neither a run, a checkpoint nor an export (no config.yaml, "
                                           "state.json or config.json)");
}

absl::StatusOr<models::DiTConfig> BundleDiTConfig(const ModelBundle& bundle) {
  const auto it = bundle.tensors.find("dit.x_embedder.proj.weight");
  if (it == bundle.tensors.end() || it->second.dim() != 4) {
    return absl::InvalidArgumentError(bundle.source + ": no DiT patch embedding ('dit.x_embedder.proj.weight')");
  }
  return models::ResolveDiT(bundle.options.model, bundle.options.data.image_size, it->second.size(1));
}

absl::StatusOr<DiTStage> BuildStage(const ModelBundle& bundle) {
  ASSIGN_OR_RETURN(models::DiTConfig dit, BundleDiTConfig(bundle));
  ASSIGN_OR_RETURN(diffusion::GaussianDiffusion diffusion, diffusion::GaussianDiffusion::Create(bundle.options.diffusion));
  DiTStage stage(dit, bundle.options.model.text, bundle.options.data.max_tokens, diffusion);
  torch::NoGradGuard no_grad;
  std::set<std::string> known;  // every tensor name of the configured model
  const auto fit = [&](const std::string& name, torch::Tensor target, bool required) -> absl::Status {
    known.insert(name);
    const auto it = bundle.tensors.find(name);
    if (it == bundle.tensors.end()) {
      if (!required) return absl::OkStatus();
      return absl::InvalidArgumentError(bundle.source + ": parameter '" + name + "' is missing; the weights do not fit their config");
    }
    if (it->second.sizes() != target.sizes()) {
      return absl::InvalidArgumentError(bundle.source + ": parameter '" + name + "' has shape " +
                                        c10::str(it->second.sizes()) + ", the config needs " + c10::str(target.sizes()));
    }
    target.copy_(it->second);
    return absl::OkStatus();
  };
  for (auto& item : stage->named_parameters()) RETURN_IF_ERROR(fit(item.key(), item.value(), true));
  for (auto& item : stage->named_buffers()) RETURN_IF_ERROR(fit(item.key(), item.value(), false));
  for (const auto& [name, t] : bundle.tensors) {
    if (!known.count(name)) {
      return absl::InvalidArgumentError(bundle.source + ": tensor '" + name + "' is not part of the configured model");
    }
  }
  stage->eval();
  return stage;
}

absl::Status WriteExport(const ModelBundle& bundle, const std::string& out_dir, const std::string& dtype) {
  static const std::map<std::string, torch::ScalarType> types = {
      {"fp32", torch::kFloat32}, {"bf16", torch::kBFloat16}, {"fp16", torch::kFloat16}};
  const auto type = types.find(dtype);
  if (type == types.end()) return absl::InvalidArgumentError("--dtype must be fp32, bf16 or fp16, not '" + dtype + "'");
  ASSIGN_OR_RETURN(models::DiTConfig dit, BundleDiTConfig(bundle));
  const fs::path out(out_dir);
  std::error_code ec;
  if (fs::exists(out)) {
    if (!fs::is_directory(out)) return absl::AlreadyExistsError(out_dir + " exists and is not a directory; choose another --out");
    if (!fs::is_empty(out) && !fs::exists(out / "config.json")) {
      return absl::AlreadyExistsError(out_dir + " exists and is not an export; choose an empty or new --out");
    }
  }
  fs::create_directories(out, ec);
  if (ec) return absl::InternalError("cannot create " + out_dir + ": " + ec.message());

  std::vector<NamedTensor> tensors;
  for (const auto& [name, t] : bundle.tensors) {
    tensors.push_back({name, t.is_floating_point() ? t.to(type->second) : t});
  }
  const ExperimentOptions& o = bundle.options;
  nlohmann::ordered_json info = {
      {"format", kExportFormat},
      {"version", kExportVersion},
      {"step", bundle.step},
      {"weights", bundle.weights},
      {"dtype", DtypeName(type->second)},
      {"model",
       {{"kind", o.model.kind},
        {"image_size", dit.image_size},
        {"channels", dit.channels},
        {"patch", dit.patch},
        {"width", dit.width},
        {"depth", dit.depth},
        {"heads", dit.heads},
        {"mlp_ratio", dit.mlp_ratio},
        {"context_dim", dit.context_dim},
        {"max_tokens", o.data.max_tokens},
        {"text", {{"width", o.model.text.width}, {"depth", o.model.text.depth}, {"heads", o.model.text.heads},
                  {"vocab", o.model.text.vocab}}}}},
      {"diffusion",
       {{"schedule", o.diffusion.schedule},
        {"timesteps", o.diffusion.timesteps},
        {"prediction", o.diffusion.prediction},
        {"loss_weight", o.diffusion.loss_weight},
        {"snr_gamma", o.diffusion.snr_gamma}}},
      {"data", {{"fit", o.data.fit}, {"caption_dropout", o.data.caption_dropout}}}};
  // Weights first, the description last: a reader that sees config.json sees the rest.
  RETURN_IF_ERROR(WriteSafetensors((out / "model.safetensors").string(), tensors,
                                   {{"format", kExportFormat}, {"version", std::to_string(kExportVersion)},
                                    {"weights", bundle.weights}, {"step", std::to_string(bundle.step)}}));
  if (!bundle.tokenizer_model.empty()) {
    RETURN_IF_ERROR(WriteFileAtomic((out / "tokenizer.model").string(), bundle.tokenizer_model));
  }
  RETURN_IF_ERROR(WriteFileAtomic((out / "config.yaml").string(), config::ToYaml(o)));
  return WriteFileAtomic((out / "config.json").string(), info.dump(2) + "\n");
}

}  // namespace loom::train

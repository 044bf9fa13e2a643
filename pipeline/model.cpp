// Loading models from runs, checkpoints, exports and pipelines (see model.h).
#include "pipeline/model.h"

#include <filesystem>

#include "core/config/load.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "pipeline/export.h"
#include "stages/cascade.h"
#include "stages/registry.h"
#include "train/checkpoint.h"
#include "train/trainables.h"

namespace loom::pipeline {
namespace {

namespace fs = std::filesystem;

// Loads the frozen dependencies recorded for `source`: relative paths are relative to
// `base` (an export's directory); a run's records carry the resolved absolute path.
absl::StatusOr<std::map<std::string, std::shared_ptr<LoadedModel>>> LoadDependencies(const nlohmann::json& records,
                                                                                     const fs::path& base,
                                                                                     const std::string& source) {
  std::map<std::string, std::shared_ptr<LoadedModel>> out;
  for (const auto& [name, record] : records.items()) {
    std::string path;
    try {
      path = record.at("path").get<std::string>();
      if (!base.empty() && fs::path(path).is_relative()) {
        path = (base / path).lexically_normal().string();
      } else if (record.contains("resolved") && fs::exists(record.at("resolved").get<std::string>())) {
        path = record.at("resolved").get<std::string>();
      }
      ASSIGN_OR_RETURN(LoadedModel dep, LoadExport(path));
      const std::string want = record.at("hash").get<std::string>();
      if (dep.hash != want) {
        return absl::FailedPreconditionError(source + " was made with " + name + " = " + path + " (content hash " +
                                             want.substr(0, 12) + "...), but that export now has hash " +
                                             dep.hash.substr(0, 12) + "...; restore the export it was made with");
      }
      out[name] = std::make_shared<LoadedModel>(std::move(dep));
    } catch (const nlohmann::json::exception& e) {
      return absl::DataLossError(source + ": the record of dependency '" + name + "' is damaged: " + e.what());
    }
  }
  return out;
}

// The stage of `o` with `tensors` as its weights, frozen, in eval mode.
absl::StatusOr<std::shared_ptr<stages::Stage>> Build(const train::ExperimentOptions& o,
                                                     const std::map<std::string, std::shared_ptr<LoadedModel>>& deps,
                                                     const std::map<std::string, std::string>& assets,
                                                     const std::map<std::string, torch::Tensor>& tensors,
                                                     const nlohmann::json& calibration, const std::string& source) {
  stages::StageInputs in;
  in.options = &o.stage;
  in.data = o.data;
  in.optim = o.optim;
  in.train = o.train;
  in.assets = assets;
  for (const auto& [name, dep] : deps) in.dependencies[name] = dep->stage;
  ASSIGN_OR_RETURN(std::shared_ptr<stages::Stage> stage, stages::MakeStage(in));
  RETURN_IF_ERROR(train::LoadWeights(*stage, tensors, source));
  RETURN_IF_ERROR(stage->SetCalibration(calibration));
  stage->eval();
  for (auto& p : stage->parameters()) p.requires_grad_(false);
  return stage;
}

absl::StatusOr<LoadedModel> FromCheckpoint(const fs::path& dir, const std::string& weights) {
  ASSIGN_OR_RETURN(train::OpenedCheckpoint ck, train::OpenCheckpoint(dir.string()));
  RETURN_IF_ERROR(ck.tensors.Verify());  // all of it, not only the weights used here
  LoadedModel m;
  m.source = dir.string();
  m.step = ck.state.step;
  ASSIGN_OR_RETURN(m.options, config::LoadString<train::ExperimentOptions>(ck.config_yaml,
                                                                           (dir / "config.yaml").string()));
  m.kind = m.options.stage.kind();
  m.dependencies = ck.state.dependencies;
  ASSIGN_OR_RETURN(m.parts, LoadDependencies(ck.state.dependencies, {}, m.source));
  std::map<std::string, torch::Tensor> tensors;
  bool all_ema = true;
  for (const std::string& name : ck.tensors.Keys("param/")) {
    const bool ema = weights == "ema" && ck.tensors.Has("ema/" + name);
    all_ema = all_ema && ema;
    ASSIGN_OR_RETURN(tensors[name], ck.tensors.ReadWhole((ema ? "ema/" : "param/") + name));
  }
  for (const std::string& name : ck.tensors.Keys("buffer/")) {
    ASSIGN_OR_RETURN(tensors[name], ck.tensors.ReadWhole("buffer/" + name));
  }
  m.weights = all_ema ? "ema" : "raw";
  ASSIGN_OR_RETURN(m.stage, Build(m.options, m.parts, ck.assets, tensors, nlohmann::json::object(), m.source));
  return m;
}

// A cascade export (pipeline/export.h): its stages, each loaded as an export and checked
// against the hashes config.json records, chained.
absl::StatusOr<LoadedModel> LoadCascade(const fs::path& dir, const nlohmann::json& info) {
  const std::string path = dir.string();
  LoadedModel m;
  m.source = path;
  m.from_export = true;
  m.kind = "cascade";
  std::vector<std::shared_ptr<stages::Stage>> models;
  std::vector<std::string> names;
  std::vector<stages::CascadeSampling> sampling;
  std::string hashes;
  try {
    for (const auto& part : info.at("parts")) hashes += part.at("hash").get<std::string>();
    for (const auto& entry : info.at("stages")) {
      const std::string name = entry.at("name").get<std::string>(), sub = entry.at("dir").get<std::string>();
      if (sub.empty() || sub.find('/') != std::string::npos || sub[0] == '.') {
        return absl::DataLossError(path + "/config.json names a bad stage directory '" + sub + "'");
      }
      ASSIGN_OR_RETURN(LoadedModel stage, LoadExport((dir / sub).string()));
      if (stage.hash != entry.at("hash").get<std::string>()) {
        return absl::DataLossError(path + ": stage '" + name + "' does not match the hash the cascade records (a "
                                   "stage was changed or replaced; chain the cascade again)");
      }
      const stages::CascadeSampling s{entry.at("steps").get<int>(), entry.at("cfg").get<double>(),
                                      entry.at("aug_level").get<double>()};
      hashes += stage.hash + CascadeSamplingKey(s);
      if (models.empty()) {
        m.options = stage.options;
        m.step = stage.step;
      }
      models.push_back(stage.stage);
      names.push_back(name);
      sampling.push_back(s);
      m.parts[name] = std::make_shared<LoadedModel>(std::move(stage));
    }
    m.hash = info.at("hash").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(path + "/config.json is damaged: " + e.what());
  }
  if (Sha256(hashes) != m.hash) return absl::DataLossError(path + "/config.json: its hash does not match its stages (damaged)");
  ASSIGN_OR_RETURN(auto cascade, stages::CascadeStage::Make(std::move(models), std::move(names), std::move(sampling)));
  m.stage = cascade;
  return m;
}

}  // namespace

std::map<std::string, torch::Tensor> StageTensors(stages::Stage& stage) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : stage.named_parameters()) {
    out[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).clone();
  }
  for (const auto& item : stage.named_buffers()) {
    out[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).clone();
  }
  return out;
}

absl::StatusOr<LoadedModel> LoadExport(const std::string& path) {
  const fs::path dir(path);
  if (!fs::is_directory(dir)) return absl::NotFoundError(path + ": no such export directory");
  if (!fs::exists(dir / "config.json")) {
    return absl::InvalidArgumentError(path + " is not an export (no config.json); make one with 'loom export RUN --out " +
                                      path + "'");
  }
  ASSIGN_OR_RETURN(const std::string text, ReadFile((dir / "config.json").string()));
  nlohmann::json info;
  try {
    info = nlohmann::json::parse(text);
    if (info.at("format") != kExportFormat) return absl::InvalidArgumentError(path + "/config.json is not a loom export's");
    const int version = info.at("version").get<int>();
    if (version != kExportVersion) {
      return absl::FailedPreconditionError(path + " is a loom export of version " + std::to_string(version) +
                                           "; this loom reads version " + std::to_string(kExportVersion) +
                                           ": export its run again with this loom");
    }
    if (info.at("kind") == "cascade") return LoadCascade(dir, info);
    if (info.at("kind") == "pipeline") {
      const std::string output = info.at("output").get<std::string>();
      std::string output_dir;
      for (const auto& part : info.at("parts")) {
        const std::string dir_name = part.at("dir").get<std::string>();
        if (dir_name.empty() || dir_name.find('/') != std::string::npos || dir_name[0] == '.') {
          return absl::DataLossError(path + "/config.json names a bad part directory '" + dir_name + "'");
        }
        if (part.at("name") == output) output_dir = dir_name;
      }
      if (output_dir.empty()) return absl::DataLossError(path + "/config.json: its output part is not among its parts");
      ASSIGN_OR_RETURN(LoadedModel m, LoadExport((dir / output_dir).string()));
      std::string hashes;
      for (const auto& part : info.at("parts")) {
        const std::string name = part.at("name").get<std::string>();
        const std::string want = part.at("hash").get<std::string>();
        const std::string got = name == output ? m.hash : (m.parts.count(name) ? m.parts.at(name)->hash : "");
        if (got != want) {
          return absl::DataLossError(path + ": part '" + name + "' does not match the hash the pipeline records "
                                     "(a part was changed or replaced; export the pipeline again)");
        }
        hashes += want;
      }
      if (Sha256(hashes) != info.at("hash").get<std::string>()) {
        return absl::DataLossError(path + "/config.json: its hash does not match its parts (damaged)");
      }
      m.source = path;
      m.hash = info.at("hash").get<std::string>();  // a pipeline is known by its own hash
      return m;
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(path + "/config.json is damaged: " + e.what());
  }
  LoadedModel m;
  m.source = path;
  m.from_export = true;
  std::vector<std::string> files = {(dir / "model.safetensors").string(), (dir / "config.yaml").string()};
  std::map<std::string, std::string> assets;
  nlohmann::json calibration;
  try {
    m.kind = info.at("kind").get<std::string>();
    m.step = info.at("step").get<int64_t>();
    m.weights = info.at("weights").get<std::string>();
    m.hash = info.at("hash").get<std::string>();
    m.dependencies = info.at("dependencies");
    calibration = info.at("calibration");
    for (const auto& name : info.at("assets")) {
      const std::string file = name.get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos) return absl::DataLossError(path + ": bad asset name");
      files.push_back((dir / file).string());
      ASSIGN_OR_RETURN(assets[file], ReadFile((dir / file).string()));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(path + "/config.json is damaged: " + e.what());
  }
  // Each tensor's checksum first (naming a damaged file and tensor), then the whole.
  ASSIGN_OR_RETURN(auto tensors, ReadSafetensors((dir / "model.safetensors").string()));
  ASSIGN_OR_RETURN(const std::string hash, Sha256OfFiles(files, calibration.dump()));
  if (hash != m.hash) {
    return absl::DataLossError(path + ": its files do not match the content hash in config.json (damaged or "
                               "changed after the export); export it again");
  }
  ASSIGN_OR_RETURN(m.options, config::LoadFile<train::ExperimentOptions>((dir / "config.yaml").string(), {}));
  if (m.options.stage.kind() != m.kind) return absl::DataLossError(path + ": config.json and config.yaml disagree on the kind");
  for (auto& [name, t] : tensors) {
    if (t.is_floating_point()) t = t.to(torch::kFloat32);
  }
  ASSIGN_OR_RETURN(m.parts, LoadDependencies(m.dependencies, dir, m.source));
  ASSIGN_OR_RETURN(m.stage, Build(m.options, m.parts, assets, tensors, calibration, m.source));
  return m;
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const std::string& weights) {
  if (weights != "ema" && weights != "raw") {
    return absl::InvalidArgumentError("weights must be ema or raw, not '" + weights + "'");
  }
  const fs::path dir(path);
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(path + ": no such directory; pass a run (runs/NAME), a checkpoint "
                                      "(runs/NAME/checkpoints/step-N), an export or a pipeline made by 'loom export'");
  }
  if (fs::exists(dir / "config.json")) return LoadExport(path);  // holds one set of weights
  if (fs::exists(dir / "state.json")) return FromCheckpoint(dir, weights);
  if (fs::exists(dir / "config.yaml")) {
    const auto complete = train::CompleteCheckpoints(path);
    if (complete.empty()) return absl::NotFoundError(path + " has no complete checkpoint yet; train it first");
    return FromCheckpoint(complete.back().second, weights);
  }
  return absl::InvalidArgumentError(path + " is neither a run, a checkpoint nor an export (no config.yaml, "
                                           "state.json or config.json)");
}

void Freeze(LoadedModel& model, const torch::Device& device) {
  for (auto& [name, part] : model.parts) Freeze(*part, device);
  model.stage->to(device);
  model.stage->eval();
  for (auto& p : model.stage->parameters()) p.requires_grad_(false);
}

nlohmann::json DependencyRecord(const std::string& path, const LoadedModel& model) {
  return {{"path", path},
          {"resolved", fs::absolute(path).lexically_normal().string()},
          {"hash", model.hash},
          {"kind", model.kind}};
}

}  // namespace loom::pipeline

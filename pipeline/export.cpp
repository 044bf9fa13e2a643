// Exports and pipelines on disk (see export.h).
#include "pipeline/export.h"

#include <stdio.h>   // renameat2
#include <fcntl.h>   // AT_FDCWD
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "core/config/load.h"
#include "core/fs.h"
#include "core/safetensors.h"
#include "core/sha256.h"

namespace loom::pipeline {
namespace {

namespace fs = std::filesystem;

// One stage's export into `dir` (created), with `dependencies` as recorded.
absl::StatusOr<std::string> WriteStageExport(const LoadedModel& m, const fs::path& dir, const ExportOptions& o,
                                             const nlohmann::json& dependencies) {
  static const std::map<std::string, torch::ScalarType> types = {
      {"fp32", torch::kFloat32}, {"bf16", torch::kBFloat16}, {"fp16", torch::kFloat16}};
  const auto type = types.find(o.dtype);
  if (type == types.end()) return absl::InvalidArgumentError("--dtype must be fp32, bf16 or fp16, not '" + o.dtype + "'");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError("cannot create " + dir.string() + ": " + ec.message());
  std::vector<NamedTensor> tensors;
  for (const auto& [name, t] : StageTensors(*m.stage)) {
    tensors.push_back({name, t.is_floating_point() ? t.to(type->second) : t});
  }
  RETURN_IF_ERROR(WriteSafetensors((dir / "model.safetensors").string(), tensors,
                                   {{"format", kExportFormat}, {"version", std::to_string(kExportVersion)},
                                    {"kind", m.kind}, {"weights", m.weights}, {"step", std::to_string(m.step)}}));
  RETURN_IF_ERROR(WriteFileAtomic((dir / "config.yaml").string(), config::ToYaml(m.options)));
  std::vector<std::string> assets;
  for (const auto& [name, content] : m.stage->Assets()) {
    RETURN_IF_ERROR(WriteFileAtomic((dir / name).string(), content));
    assets.push_back(name);
  }
  const nlohmann::json calibration = o.calibration;
  ASSIGN_OR_RETURN(const std::string hash, ExportHash(dir.string(), assets, calibration));
  nlohmann::ordered_json info = {{"format", kExportFormat},
                                 {"version", kExportVersion},
                                 {"kind", m.kind},
                                 {"step", m.step},
                                 {"weights", m.weights},
                                 {"dtype", o.dtype},
                                 {"hash", hash},
                                 {"model", m.stage->Describe()},
                                 {"calibration", calibration},
                                 {"dependencies", dependencies},
                                 {"assets", assets}};
  RETURN_IF_ERROR(WriteFileAtomic((dir / "config.json").string(), info.dump(2) + "\n"));
  return hash;
}

// Puts `tmp` at `out` in one step: an atomic exchange with an earlier export (then
// removed), or a rename when there is none.
absl::Status SwapIn(const fs::path& tmp, const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out)) {
    if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) != 0) {
      return absl::InternalError("cannot swap " + tmp.string() + " with " + out.string() + ": " + std::strerror(errno));
    }
    fs::remove_all(tmp, ec);  // now the earlier export
  } else {
    fs::rename(tmp, out, ec);
    if (ec) return absl::InternalError("cannot rename " + tmp.string() + ": " + ec.message());
  }
  return SyncPath(out.parent_path().empty() ? "." : out.parent_path().string());
}

}  // namespace

absl::StatusOr<std::string> ExportHash(const std::string& dir, const std::vector<std::string>& assets,
                                       const nlohmann::json& calibration) {
  std::vector<std::string> files = {dir + "/model.safetensors", dir + "/config.yaml"};
  for (const std::string& a : assets) files.push_back(dir + "/" + a);
  return Sha256OfFiles(files, calibration.dump());
}

namespace {

}  // namespace

std::string CascadeSamplingKey(const stages::CascadeSampling& s) {
  return nlohmann::json({{"steps", s.steps}, {"cfg", s.cfg}, {"aug_level", s.aug_level}}).dump();
}

namespace {

// Checks `out_dir` can take an export and clears partial ones of crashed attempts;
// returns the directory to build it in, beside its place.
absl::StatusOr<fs::path> PrepareOut(const std::string& out_dir) {
  const fs::path out = fs::path(out_dir).lexically_normal();
  std::error_code ec;
  if (fs::exists(out)) {
    if (!fs::is_directory(out)) return absl::AlreadyExistsError(out_dir + " exists and is not a directory; choose another --out");
    if (!fs::is_empty(out) && !fs::exists(out / "config.json")) {
      return absl::AlreadyExistsError(out_dir + " exists and is not an export; choose an empty or new --out");
    }
  }
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path(), ec);
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    if (e.path().filename().string().rfind(out.filename().string() + ".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
  }
  return fs::path(out.string() + ".tmp-" + std::to_string(::getpid()));
}

// Syncs `tmp` and swaps it in at `out`.
absl::Status Commit(const fs::path& tmp, const std::string& out_dir) {
  RETURN_IF_ERROR(SyncPath(tmp.string()));
  // Fault injection for tests: LOOM_FAULT_EXPORT=1 ends the process with the new export
  // complete beside the old one, as a crash before the swap would.
  if (const char* fault = std::getenv("LOOM_FAULT_EXPORT"); fault != nullptr && std::atoi(fault) == 1) std::_Exit(86);
  return SwapIn(tmp, fs::path(out_dir).lexically_normal());
}

}  // namespace

absl::Status WriteExport(const LoadedModel& m, const std::string& out_dir, const ExportOptions& o) {
  if (m.kind == "cascade") {
    return absl::InvalidArgumentError(m.source + " is a cascade; copy it, or chain its stages again with "
                                      "'loom export --cascade'");
  }
  ASSIGN_OR_RETURN(const fs::path tmp, PrepareOut(out_dir));
  std::error_code ec;
  if (m.parts.empty()) {
    RETURN_IF_ERROR(WriteStageExport(m, tmp, o, nlohmann::json::object()).status());
  } else {
    // A pipeline: each dependency's export as a part, then this stage's, pointing at them.
    nlohmann::ordered_json parts = nlohmann::ordered_json::array();
    nlohmann::json dependencies = nlohmann::json::object();
    std::string hashes;
    for (const auto& [name, dep] : m.parts) {
      if (name == m.kind) return absl::InternalError("dependency '" + name + "' has the name of the stage kind");
      fs::create_directories(tmp, ec);
      fs::copy(dep->source, tmp / name, fs::copy_options::recursive, ec);
      if (ec) return absl::InternalError("cannot copy " + dep->source + " into " + (tmp / name).string() + ": " + ec.message());
      dependencies[name] = {{"path", "../" + name}, {"hash", dep->hash}, {"kind", dep->kind}};
      parts.push_back({{"name", name}, {"kind", dep->kind}, {"dir", name}, {"hash", dep->hash}});
      hashes += dep->hash;
    }
    ASSIGN_OR_RETURN(const std::string hash, WriteStageExport(m, tmp / m.kind, o, dependencies));
    parts.push_back({{"name", m.kind}, {"kind", m.kind}, {"dir", m.kind}, {"hash", hash}});
    hashes += hash;
    nlohmann::ordered_json info = {{"format", kExportFormat}, {"version", kExportVersion}, {"kind", "pipeline"},
                                   {"output", m.kind},       {"hash", Sha256(hashes)},  {"parts", parts}};
    RETURN_IF_ERROR(WriteFileAtomic((tmp / "config.json").string(), info.dump(2) + "\n"));
  }
  return Commit(tmp, out_dir);
}

absl::Status WriteCascade(const std::vector<CascadePart>& stages, const std::string& out_dir, const ExportOptions& o) {
  // The cascade's checks (sides, channels) before anything is written.
  std::vector<std::shared_ptr<stages::Stage>> models;
  std::vector<std::string> names;
  std::vector<stages::CascadeSampling> sampling;
  for (const CascadePart& part : stages) {
    models.push_back(part.model->stage);
    names.push_back(part.model->source);
    sampling.push_back(part.sampling);
  }
  RETURN_IF_ERROR(stages::CascadeStage::Make(models, names, sampling).status());
  // One text encoder for every stage (each stage's own trained one, or the same frozen one).
  const auto encoder = [](const LoadedModel& m) {
    return m.dependencies.contains("text_encoder") ? m.dependencies["text_encoder"].value("hash", std::string("?"))
                                                   : std::string();
  };
  for (size_t i = 1; i < stages.size(); ++i) {
    const std::string a = encoder(*stages[0].model), b = encoder(*stages[i].model);
    if (a != b) {
      const auto describe = [](const std::string& hash) {
        return hash.empty() ? std::string("its own trained text encoder")
                            : "the frozen text encoder of hash " + hash.substr(0, 12) + "...";
      };
      return absl::InvalidArgumentError(
          "the cascade's stages used different text encoders: " + stages[0].model->source + " was trained with " +
          describe(a) + ", " + stages[i].model->source + " with " + describe(b) +
          "; train every stage under the same stage.text_encoder");
    }
  }
  std::map<std::string, const LoadedModel*> shared;  // dependencies by name
  for (const CascadePart& part : stages) {
    for (const auto& [name, dep] : part.model->parts) {
      const auto [it, fresh] = shared.emplace(name, dep.get());
      if (!fresh && it->second->hash != dep->hash) {
        return absl::InvalidArgumentError("the cascade's stages depend on different '" + name + "' exports (" +
                                          it->second->source + ", " + dep->source + "); train them under one");
      }
    }
  }
  ASSIGN_OR_RETURN(const fs::path tmp, PrepareOut(out_dir));
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) return absl::InternalError("cannot create " + tmp.string() + ": " + ec.message());
  nlohmann::ordered_json parts = nlohmann::ordered_json::array(), entries = nlohmann::ordered_json::array();
  nlohmann::json dependencies = nlohmann::json::object();
  std::string hashes;
  for (const auto& [name, dep] : shared) {
    fs::copy(dep->source, tmp / name, fs::copy_options::recursive, ec);
    if (ec) return absl::InternalError("cannot copy " + dep->source + " into " + (tmp / name).string() + ": " + ec.message());
    dependencies[name] = {{"path", "../" + name}, {"hash", dep->hash}, {"kind", dep->kind}};
    parts.push_back({{"name", name}, {"kind", dep->kind}, {"dir", name}, {"hash", dep->hash}});
    hashes += dep->hash;
  }
  for (const CascadePart& part : stages) {
    if (part.name.empty() || part.name.find('/') != std::string::npos || shared.count(part.name) > 0) {
      return absl::InternalError("bad cascade stage name '" + part.name + "'");
    }
    ExportOptions own = o;
    own.calibration = part.model->stage->calibration();
    nlohmann::json deps = nlohmann::json::object();
    for (const auto& [name, dep] : part.model->parts) deps[name] = dependencies[name];
    ASSIGN_OR_RETURN(const std::string hash, WriteStageExport(*part.model, tmp / part.name, own, deps));
    entries.push_back({{"name", part.name},
                       {"dir", part.name},
                       {"hash", hash},
                       {"source", part.model->source},
                       {"steps", part.sampling.steps},
                       {"cfg", part.sampling.cfg},
                       {"aug_level", part.sampling.aug_level}});
    hashes += hash + CascadeSamplingKey(part.sampling);
  }
  nlohmann::ordered_json info = {{"format", kExportFormat}, {"version", kExportVersion}, {"kind", "cascade"},
                                 {"hash", Sha256(hashes)},  {"stages", entries},        {"parts", parts}};
  RETURN_IF_ERROR(WriteFileAtomic((tmp / "config.json").string(), info.dump(2) + "\n"));
  return Commit(tmp, out_dir);
}

}  // namespace loom::pipeline

// Atomic, world-size independent checkpoints (see checkpoint.h).
#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/fs.h"
#include "core/log.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

const std::regex kName("step-([0-9]{7})");

// Fault injection for tests: LOOM_FAULT_CHECKPOINT_FILES=k ends the process at the k-th
// step of checkpoint writing (counted over the whole run: 6 per checkpoint), as a crash
// or a kill mid-save would.
void MaybeCrash() {
  static const char* env = std::getenv("LOOM_FAULT_CHECKPOINT_FILES");
  static int count = 0;
  if (env != nullptr && ++count == std::atoi(env)) std::_Exit(86);
}

std::vector<std::pair<int64_t, fs::path>> Complete(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> out;
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (e.is_directory() && std::regex_match(name, m, kName) && fs::exists(e.path() / "state.json")) {
      out.push_back({std::stoll(m[1].str()), e.path()});
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::Status SaveCheckpoint(const std::string& run_dir, const CheckpointContents& c, int keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  char name[32];
  std::snprintf(name, sizeof(name), "step-%07lld", static_cast<long long>(c.step));
  const fs::path final_dir = root / name;
  const fs::path tmp = root / (std::string(name) + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return absl::InternalError("cannot create " + tmp.string() + ": " + ec.message());
  RETURN_IF_ERROR(WriteSafetensors((tmp / "model.safetensors").string(), c.model, {{"format", "loom-checkpoint"}}));
  MaybeCrash();
  if (!c.ema.empty()) RETURN_IF_ERROR(WriteSafetensors((tmp / "ema.safetensors").string(), c.ema));
  MaybeCrash();
  RETURN_IF_ERROR(WriteSafetensors((tmp / "optimizer.safetensors").string(), c.optimizer));
  MaybeCrash();
  RETURN_IF_ERROR(WriteFileAtomic((tmp / "tokenizer.model").string(), c.tokenizer));
  RETURN_IF_ERROR(WriteFileAtomic((tmp / "config.yaml").string(), c.config_yaml));
  MaybeCrash();
  nlohmann::ordered_json state = {{"format", "loom-checkpoint"}, {"version", 1},
                                  {"step", c.step}, {"loader", nlohmann::json::parse(c.loader.ToJson())},
                                  {"world", c.world}, {"strategy", c.strategy}, {"adam_step", c.adam_step}};
  RETURN_IF_ERROR(WriteFileAtomic((tmp / "state.json").string(), state.dump(2) + "\n"));  // last: the marker
  MaybeCrash();
  RETURN_IF_ERROR(SyncPath(tmp.string()));
  fs::remove_all(final_dir, ec);  // a same-step checkpoint from an earlier attempt
  fs::rename(tmp, final_dir, ec);
  if (ec) return absl::InternalError("cannot rename " + tmp.string() + ": " + ec.message());
  RETURN_IF_ERROR(SyncPath(root.string()));
  MaybeCrash();
  // Keep the newest `keep`; partial directories of crashed saves go too.
  auto complete = Complete(root);
  for (size_t i = 0; i + static_cast<size_t>(keep) < complete.size(); ++i) fs::remove_all(complete[i].second, ec);
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.path().filename().string().find(".tmp-") != std::string::npos) fs::remove_all(e.path(), ec);
  }
  return absl::OkStatus();
}

std::optional<std::string> LatestCheckpointDir(const std::string& run_dir) {
  const auto complete = Complete(fs::path(run_dir) / "checkpoints");
  if (complete.empty()) return std::nullopt;
  return complete.back().second.string();
}

absl::StatusOr<std::optional<LoadedCheckpoint>> LoadLatestCheckpoint(const std::string& run_dir) {
  const std::optional<std::string> dir = LatestCheckpointDir(run_dir);
  if (!dir) return std::optional<LoadedCheckpoint>();
  ASSIGN_OR_RETURN(LoadedCheckpoint ck, LoadCheckpoint(*dir));
  return std::optional<LoadedCheckpoint>(std::move(ck));
}

absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& path, bool with_optimizer) {
  const fs::path dir(path);
  if (!fs::exists(dir / "state.json")) {
    return absl::NotFoundError(path + " is not a complete checkpoint (no state.json)");
  }
  LoadedCheckpoint ck;
  ck.dir = dir.string();
  std::ifstream in(dir / "state.json");
  try {
    const nlohmann::json state = nlohmann::json::parse(in);
    if (state.at("format") != "loom-checkpoint" || state.at("version") != 1) {
      return absl::InvalidArgumentError(ck.dir + ": not a loom checkpoint of version 1");
    }
    ck.step = state.at("step").get<int64_t>();
    ASSIGN_OR_RETURN(ck.loader, data::LoaderState::FromJson(state.at("loader").dump()));
    ck.world = state.at("world").get<int>();
    ck.strategy = state.at("strategy").get<std::string>();
    ck.adam_step = state.at("adam_step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(ck.dir + "/state.json is damaged: " + e.what());
  }
  ASSIGN_OR_RETURN(ck.model, ReadSafetensors((dir / "model.safetensors").string()));
  if (fs::exists(dir / "ema.safetensors")) {
    ASSIGN_OR_RETURN(ck.ema, ReadSafetensors((dir / "ema.safetensors").string()));
  }
  if (with_optimizer) {
    ASSIGN_OR_RETURN(ck.optimizer, ReadSafetensors((dir / "optimizer.safetensors").string()));
  }
  return ck;
}

}  // namespace loom::train

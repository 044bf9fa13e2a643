// Checkpoints written by every rank, read back at any world size (see checkpoint.h).
#include "train/checkpoint.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/fs.h"
#include "core/log.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

const std::regex kName("step-([0-9]{7})");

// Fault injection for tests: LOOM_FAULT_CHECKPOINT_FILES=k ends the process at the k-th
// point of checkpoint writing (counted over the whole run: 6 per checkpoint), as a crash
// or a kill mid-save would.
void MaybeCrash() {
  static const char* env = std::getenv("LOOM_FAULT_CHECKPOINT_FILES");
  static int count = 0;
  if (env != nullptr && ++count == std::atoi(env)) std::_Exit(86);
}

std::string RankFile(int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d.safetensors", rank);
  return name;
}

std::string StepName(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%07lld", static_cast<long long>(step));
  return name;
}

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::DataLossError(path.string() + " is missing (the checkpoint is damaged)");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::ordered_json StateJson(const CheckpointState& s, const std::map<std::string, std::string>& assets) {
  nlohmann::ordered_json trainables = nlohmann::ordered_json::array();
  for (const TrainableRecord& t : s.trainables) {
    trainables.push_back({{"name", t.name}, {"strategy", t.strategy}, {"adam_step", t.adam_step},
                          {"ema_updates", t.ema_updates}, {"steps", t.steps}});
  }
  nlohmann::ordered_json asset_names = nlohmann::ordered_json::array();
  for (const auto& [name, bytes] : assets) asset_names.push_back(name);
  return {{"format", "loom-checkpoint"},
          {"version", kCheckpointVersion},
          {"step", s.step},
          {"loader", nlohmann::json::parse(s.loader.ToJson())},
          {"world", s.world},
          {"trainables", trainables},
          {"skipped_steps", s.skipped_steps},
          {"dependencies", s.dependencies},
          {"assets", asset_names},
          {"files", s.files}};
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> SaveCheckpoint(dist::ProcessGroup& group, const std::string& run_dir,
                                       const CheckpointState& state, const std::vector<StoredSlice>& slices,
                                       const std::string& config_yaml,
                                       const std::map<std::string, std::string>& assets, int keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / StepName(state.step);
  const fs::path tmp = root / (StepName(state.step) + ".tmp");
  std::error_code ec;
  if (group.rank() == 0) {
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) return absl::InternalError("cannot create " + tmp.string() + ": " + ec.message());
  }
  RETURN_IF_ERROR(group.Barrier());
  // Every rank writes its share; rank 0 learns who wrote what in one all-gather.
  int64_t bytes = 0;
  if (!slices.empty() || group.rank() == 0) {
    ASSIGN_OR_RETURN(bytes, WriteSliceFile((tmp / RankFile(group.rank())).string(), slices,
                                           {{"format", "loom-checkpoint"}, {"step", std::to_string(state.step)}}));
  }
  MaybeCrash();
  ASSIGN_OR_RETURN(const torch::Tensor sizes, dist::AllGatherHost(group, torch::tensor({bytes}, torch::kInt64)));
  if (group.rank() == 0) {
    CheckpointState s = state;
    s.world = group.size();
    for (int r = 0; r < group.size(); ++r) {
      const int64_t n = sizes[r].item<int64_t>();
      if (n == 0) continue;
      const fs::path file = tmp / RankFile(r);
      if (!fs::exists(file) || static_cast<int64_t>(fs::file_size(file, ec)) != n) {
        return absl::FailedPreconditionError(
            "rank " + std::to_string(r) + "'s checkpoint file is not visible to rank 0 under " + tmp.string() +
            ": checkpoints need a run directory that every rank shares (run.dir on a shared file system)");
      }
      s.files[RankFile(r)] = n;
    }
    RETURN_IF_ERROR(WriteFileAtomic((tmp / "config.yaml").string(), config_yaml));
    MaybeCrash();
    for (const auto& [name, content] : assets) RETURN_IF_ERROR(WriteFileAtomic((tmp / name).string(), content));
    MaybeCrash();
    RETURN_IF_ERROR(WriteFileAtomic((tmp / "state.json").string(), StateJson(s, assets).dump(2) + "\n"));  // the marker
    MaybeCrash();
    RETURN_IF_ERROR(SyncPath(tmp.string()));
    fs::remove_all(final_dir, ec);  // a same-step checkpoint from an earlier attempt
    fs::rename(tmp, final_dir, ec);
    if (ec) return absl::InternalError("cannot rename " + tmp.string() + ": " + ec.message());
    RETURN_IF_ERROR(SyncPath(root.string()));
    MaybeCrash();
    // Keep the newest `keep`; partial directories of crashed saves go too.
    const auto complete = CompleteCheckpoints(run_dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < complete.size(); ++i) fs::remove_all(complete[i].second, ec);
    for (const auto& e : fs::directory_iterator(root)) {
      if (e.path().filename().string().ends_with(".tmp")) fs::remove_all(e.path(), ec);
    }
    MaybeCrash();
  }
  RETURN_IF_ERROR(group.Barrier());
  std::vector<int64_t> per_rank;
  for (int r = 0; r < group.size(); ++r) per_rank.push_back(sizes[r].item<int64_t>());
  return per_rank;
}

std::vector<std::pair<int64_t, std::string>> CompleteCheckpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (e.is_directory() && std::regex_match(name, m, kName) && fs::exists(e.path() / "state.json")) {
      out.push_back({std::stoll(m[1].str()), e.path().string()});
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<OpenedCheckpoint> OpenCheckpoint(const std::string& path) {
  const fs::path dir(path);
  OpenedCheckpoint ck;
  ck.dir = dir.string();
  if (!fs::exists(dir / "state.json")) {
    return absl::NotFoundError(path + " is not a complete checkpoint (no state.json)");
  }
  ASSIGN_OR_RETURN(const std::string text, ReadText(dir / "state.json"));
  std::vector<std::string> files, assets;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (j.at("format") != "loom-checkpoint") return absl::DataLossError(path + "/state.json is not a loom checkpoint's");
    const int version = j.at("version").get<int>();
    if (version != kCheckpointVersion) {
      return absl::FailedPreconditionError(
          path + " was written by an earlier loom (checkpoint format " + std::to_string(version) +
          "); this loom reads format " + std::to_string(kCheckpointVersion) +
          ": resume it with the loom that wrote it, or start a new run (another run.name)");
    }
    ck.state.step = j.at("step").get<int64_t>();
    ASSIGN_OR_RETURN(ck.state.loader, data::LoaderState::FromJson(j.at("loader").dump()));
    ck.state.world = j.at("world").get<int>();
    for (const auto& t : j.at("trainables")) {
      ck.state.trainables.push_back({t.at("name").get<std::string>(), t.at("strategy").get<std::string>(),
                                     t.at("adam_step").get<int64_t>(), t.at("ema_updates").get<int64_t>(),
                                     t.at("steps").get<int64_t>()});
    }
    ck.state.skipped_steps = j.at("skipped_steps").get<int64_t>();
    ck.state.dependencies = j.at("dependencies");
    ck.state.files = j.at("files").get<std::map<std::string, int64_t>>();
    assets = j.at("assets").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(path + "/state.json is damaged: " + e.what());
  }
  ASSIGN_OR_RETURN(ck.config_yaml, ReadText(dir / "config.yaml"));
  for (const std::string& name : assets) {
    if (name.empty() || name.find('/') != std::string::npos) {
      return absl::DataLossError(path + "/state.json names a bad asset '" + name + "'");
    }
    ASSIGN_OR_RETURN(ck.assets[name], ReadText(dir / name));
  }
  std::error_code ec;
  for (const auto& [name, bytes] : ck.state.files) {
    const fs::path file = dir / name;
    if (!fs::exists(file)) return absl::DataLossError(file.string() + " is missing (the checkpoint is damaged)");
    if (static_cast<int64_t>(fs::file_size(file, ec)) != bytes) {
      return absl::DataLossError(file.string() + " has " + std::to_string(fs::file_size(file, ec)) +
                                 " bytes, state.json says " + std::to_string(bytes) + " (truncated or replaced)");
    }
    files.push_back(file.string());
  }
  ASSIGN_OR_RETURN(ck.tensors, SliceStore::Open(files));
  return ck;
}

}  // namespace loom::train

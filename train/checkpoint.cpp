// Atomic, world-size independent checkpoints (see checkpoint.h).
#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

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

absl::StatusOr<torch::ScalarType> DtypeOf(const std::string& name) {
  static const std::map<std::string, torch::ScalarType> types = {
      {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16}, {"F64", torch::kFloat64},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"U8", torch::kUInt8},      {"BOOL", torch::kBool}};
  const auto it = types.find(name);
  if (it == types.end()) return absl::InvalidArgumentError("unsupported dtype '" + name + "'");
  return it->second;
}

}  // namespace

absl::StatusOr<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  const auto bad = [&](const std::string& why) { return absl::DataLossError(path + ": " + why); };
  if (bytes.size() < 8) return bad("shorter than a safetensors header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > bytes.size() - 8) return bad("header length " + std::to_string(n) + " runs past the end of the file");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) return bad("header is not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - n;
  std::map<std::string, torch::Tensor> out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      ASSIGN_OR_RETURN(torch::ScalarType dtype, DtypeOf(entry.at("dtype").get<std::string>()));
      const auto shape = entry.at("shape").get<std::vector<int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size) {
        return bad("tensor '" + name + "' has data offsets outside the file");
      }
      uint64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(d))) return bad("tensor '" + name + "' has a bad shape");
        numel *= static_cast<uint64_t>(d);
      }
      if (numel * c10::elementSize(dtype) != offsets[1] - offsets[0]) {
        return bad("tensor '" + name + "' has " + std::to_string(offsets[1] - offsets[0]) +
                   " bytes, its shape needs " + std::to_string(numel * c10::elementSize(dtype)));
      }
      ranges.push_back({offsets[0], offsets[1]});
      torch::Tensor t = torch::empty(shape, dtype);
      std::memcpy(t.data_ptr(), bytes.data() + 8 + n + offsets[0], offsets[1] - offsets[0]);
      out[name] = t;
    } catch (const nlohmann::json::exception& e) {
      return bad("tensor '" + name + "': " + e.what());
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return bad("tensor data ranges overlap");
  }
  return out;
}

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

absl::StatusOr<std::optional<LoadedCheckpoint>> LoadLatestCheckpoint(const std::string& run_dir) {
  const auto complete = Complete(fs::path(run_dir) / "checkpoints");
  if (complete.empty()) return std::optional<LoadedCheckpoint>();
  const fs::path dir = complete.back().second;
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
  ASSIGN_OR_RETURN(ck.optimizer, ReadSafetensors((dir / "optimizer.safetensors").string()));
  return std::optional<LoadedCheckpoint>(std::move(ck));
}

}  // namespace loom::train

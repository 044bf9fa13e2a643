// A run's checks and parts before it writes anything (see run_setup.h).
#include "train/run_setup.h"

#include <filesystem>

#include "core/log.h"
#include "train/checkpoint.h"
#include "train/trainables.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

// The caches of `manifest` must come from the dependencies the stage names.
absl::Status CheckProvenance(const ExperimentOptions& o, const RunSetup& s) {
  for (const std::string& cache : s.needs.caches) {
    const data::CacheSpec* spec = s.manifest.FindCache(cache);
    if (spec == nullptr) {
      return absl::InvalidArgumentError("data.train " + o.data.train + " has no '" + cache + "' (the " +
                                        o.stage.kind() + " stage trains on a cache made by 'loom data encode --data "
                                        "DIR --with EXPORT --out DIR')");
    }
    const auto producer = s.needs.cache_producers.find(cache);
    if (producer == s.needs.cache_producers.end()) continue;
    const auto dep = s.dependencies.find(producer->second);
    if (dep == s.dependencies.end()) continue;
    const auto made_by = spec->producer.find("hash");
    const std::string have = made_by == spec->producer.end() ? "" : made_by->second;
    if (have != dep->second->hash) {
      const auto path = spec->producer.find("export");
      return absl::InvalidArgumentError(
          "data.train " + o.data.train + "'s '" + cache + "' was encoded by " +
          (path == spec->producer.end() ? std::string("another model") : path->second) + " (hash " +
          have.substr(0, 12) + "...), but stage." + producer->second + " is " + dep->second->source + " (hash " +
          dep->second->hash.substr(0, 12) + "...); encode the data with it: loom data encode --with " +
          dep->second->source);
    }
  }
  return absl::OkStatus();
}

// The dependencies the run's newest checkpoint recorded, if it has one.
nlohmann::json RecordedDependencies(const ExperimentOptions& o) {
  const auto complete = CompleteCheckpoints((fs::path(o.run.dir) / o.run.name).string());
  if (complete.empty()) return nlohmann::json::object();
  auto ck = OpenCheckpoint(complete.back().second);
  return ck.ok() ? ck->state.dependencies : nlohmann::json::object();
}

}  // namespace

absl::StatusOr<RunSetup> SetUpRun(const ExperimentOptions& o, const torch::Device& device) {
  RunSetup s;
  ASSIGN_OR_RETURN(const stages::StageKind* kind, stages::FindStageKind(o.stage.kind()));
  const nlohmann::json recorded = RecordedDependencies(o);
  for (const stages::Dependency& d : kind->dependencies(o.stage)) {
    absl::StatusOr<pipeline::LoadedModel> dep = pipeline::LoadExport(d.path);
    if (!dep.ok()) return absl::Status(dep.status().code(), "stage." + d.name + ": " + std::string(dep.status().message()));
    if (!d.kind.empty() && dep->kind != d.kind) {
      return absl::InvalidArgumentError("stage." + d.name + ": " + d.path + " is a '" + dep->kind +
                                        "' export; this option needs a '" + d.kind + "' export");
    }
    if (recorded.contains(d.name) && recorded[d.name].value("hash", "") != dep->hash) {
      const std::string was = recorded[d.name].value("hash", "");
      return absl::FailedPreconditionError("stage." + d.name + ": " + d.path +
                                           " has changed since the run started (content hash " + was.substr(0, 12) +
                                           "... then, " + dep->hash.substr(0, 12) +
                                           "... now); restore that export, or start a new run (another run.name)");
    }
    pipeline::Freeze(*dep, device);
    s.dependency_records[d.name] = pipeline::DependencyRecord(d.path, *dep);
    s.dependencies[d.name] = std::make_shared<pipeline::LoadedModel>(std::move(*dep));
  }
  s.inputs.options = &o.stage;
  s.inputs.data = o.data;
  s.inputs.optim = o.optim;
  s.inputs.train = o.train;
  for (const auto& [name, dep] : s.dependencies) s.inputs.dependencies[name] = dep->stage;
  if (o.data.train.empty()) return absl::InvalidArgumentError("data.train is empty: name a dataset directory");
  ASSIGN_OR_RETURN(s.manifest, data::ReadManifest(o.data.train));
  torch::manual_seed(static_cast<uint64_t>(o.run.seed));  // the same init everywhere (rank 0's wins anyway)
  ASSIGN_OR_RETURN(s.stage, stages::MakeStage(s.inputs));
  s.inputs.assets = s.stage->Assets();  // copies take the same files
  s.needs = s.stage->Needs();
  const data::Modality reads = s.needs.clips ? data::Modality::kVideo : data::Modality::kImage;
  if (s.needs.pixels && s.manifest.spec.modality != reads) {
    return absl::InvalidArgumentError(o.data.train + " holds " + data::ModalityName(s.manifest.spec.modality) +
                                      "; the " + o.stage.kind() + " stage trains on " +
                                      (s.needs.clips ? "clips" : "images"));
  }
  RETURN_IF_ERROR(CheckProvenance(o, s));
  s.stage->to(device);
  return s;
}

data::LoaderOptions TrainLoaderOptions(const ExperimentOptions& o, const RunSetup& s, int rank, int world,
                                       int64_t micro_batch) {
  data::LoaderOptions lo;
  lo.dir = o.data.train;
  lo.batch = micro_batch;
  lo.rank = rank;
  lo.world = world;
  lo.workers = o.data.workers;
  lo.prefetch = o.data.prefetch;
  lo.image_size = o.data.image_size;
  lo.channels = o.data.channels;
  lo.fit = o.data.fit;
  lo.flip = o.data.flip;
  lo.max_tokens = o.data.max_tokens;
  lo.skip_bad = o.data.on_error == "skip";
  lo.max_skipped = o.data.max_skipped;
  lo.pixels = s.needs.pixels;
  lo.caches = s.needs.caches;
  if (s.needs.tokens) {
    // The stage's own tokenizer, from the same file it was made with.
    const std::string path = o.data.tokenizer.empty() ? o.data.train + "/tokenizer.model" : o.data.tokenizer;
    auto tokenizer = data::Tokenizer::Load(path);
    if (tokenizer.ok()) lo.tokenizer = *tokenizer;
  }
  return lo;
}

absl::StatusOr<stages::PreviewData> LoadPreviewData(const ExperimentOptions& o, const RunSetup& s) {
  stages::PreviewData p;
  p.label_names = s.manifest.label_names;
  p.seed = static_cast<uint64_t>(o.run.seed);
  p.data = o.data;
  std::string dir = o.data.train;
  if (!o.data.test.empty()) {
    auto test = data::ReadManifest(o.data.test);
    bool fits = test.ok();
    for (const std::string& c : s.needs.caches) fits = fits && test->FindCache(c) != nullptr;
    if (fits) dir = o.data.test;
  }
  ASSIGN_OR_RETURN(data::Manifest m, data::ReadManifest(dir));
  data::LoaderOptions lo;
  lo.dir = dir;
  lo.batch = std::min<int64_t>(16, m.total);
  lo.workers = 0;
  lo.image_size = o.data.image_size;
  lo.channels = o.data.channels;
  lo.fit = o.data.fit;
  lo.caches = s.needs.caches;
  ASSIGN_OR_RETURN(auto loader, data::Loader::Create(lo, {0, 0, p.seed}));
  ASSIGN_OR_RETURN(p.batch, loader->Next());
  return p;
}

absl::StatusOr<std::shared_ptr<stages::Stage>> CopyStage(const RunSetup& s,
                                                         const std::map<std::string, torch::Tensor>& weights,
                                                         const torch::Device& device) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  const at::Tensor state = gen.get_state();  // making a stage draws its initial weights
  absl::StatusOr<std::shared_ptr<stages::Stage>> copy = stages::MakeStage(s.inputs);
  gen.set_state(state);
  if (!copy.ok()) return copy.status();
  RETURN_IF_ERROR(LoadWeights(**copy, weights, "the run's weights"));
  (*copy)->to(device);
  (*copy)->eval();
  return copy;
}

}  // namespace loom::train

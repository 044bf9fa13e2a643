// A cascade of a base stage and super-resolution stages (see cascade.h).
#include "stages/cascade.h"

#include "core/rng.h"
#include "stages/denoising.h"  // PreviewPrompts

namespace loom::stages {
namespace {

// `values` spread over `n` stages: none (the defaults), one for all, or one each.
template <typename T>
absl::Status Spread(const std::vector<T>& values, size_t n, const char* what, const std::function<void(size_t, T)>& set) {
  if (values.empty()) return absl::OkStatus();
  if (values.size() != 1 && values.size() != n) {
    return absl::InvalidArgumentError(std::string("the cascade has ") + std::to_string(n) + " stages but " +
                                      std::to_string(values.size()) + " values of " + what +
                                      " were given; give one for every stage, or one for all");
  }
  for (size_t i = 0; i < n; ++i) set(i, values[values.size() == 1 ? 0 : i]);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<CascadeStage>> CascadeStage::Make(std::vector<std::shared_ptr<Stage>> stages,
                                                                 std::vector<std::string> names,
                                                                 std::vector<CascadeSampling> sampling) {
  if (stages.size() < 2) return absl::InvalidArgumentError("a cascade needs a base stage and at least one super-resolution stage");
  if (names.size() != stages.size() || sampling.size() != stages.size()) {
    return absl::InternalError("a cascade needs one name and one sampling setting per stage");
  }
  if (stages[0]->AsTextToImage() == nullptr || stages[0]->AsSuperResolution() != nullptr) {
    return absl::InvalidArgumentError("the first stage of a cascade (" + names[0] + ", a '" + stages[0]->kind() +
                                      "' model) must make images from text; name a base stage first");
  }
  ImageSpec made = stages[0]->AsTextToImage()->image_spec();
  for (size_t i = 1; i < stages.size(); ++i) {
    const SuperResolution* sr = stages[i]->AsSuperResolution();
    if (sr == nullptr) {
      return absl::InvalidArgumentError("stage " + std::to_string(i + 1) + " of the cascade (" + names[i] + ", a '" +
                                        stages[i]->kind() + "' model) is not a super-resolution stage (stage.low_res)");
    }
    const ImageSpec spec = sr->image_spec();
    if (sr->low_res() != made.size || spec.channels != made.channels) {
      return absl::InvalidArgumentError(
          "stage " + std::to_string(i + 1) + " of the cascade (" + names[i] + ") upsamples " + std::to_string(sr->low_res()) +
          "x" + std::to_string(sr->low_res()) + " images with " + std::to_string(spec.channels) + " channel(s), but " +
          names[i - 1] + " makes " + std::to_string(made.size) + "x" + std::to_string(made.size) + " with " +
          std::to_string(made.channels) + "; chain stages whose sides and channels follow on");
    }
    made = {made.size * sr->factor(), spec.channels, spec.fit};
  }
  for (const CascadeSampling& s : sampling) {
    if (s.steps < 1 || s.cfg < 0 || s.aug_level > 1) {
      return absl::InvalidArgumentError("a cascade stage's sampling needs steps >= 1, cfg >= 0 and an augmentation "
                                        "level in [0, 1]");
    }
  }
  std::shared_ptr<CascadeStage> c(new CascadeStage());
  c->stages_ = std::move(stages);
  c->names_ = std::move(names);
  c->sampling_ = std::move(sampling);
  // Registered by position: the names may be paths, which module names cannot hold.
  for (size_t i = 0; i < c->stages_.size(); ++i) c->register_module("stage" + std::to_string(i), c->stages_[i]);
  return c;
}

LossResult CascadeStage::Loss(const data::Batch&, const StepContext&) {
  TORCH_CHECK(false, "a cascade is not trained as one: train each of its stages as a run");
}

ImageSpec CascadeStage::image_spec() const {
  const SuperResolution* last = stages_.back()->AsSuperResolution();
  ImageSpec spec = stages_[0]->AsTextToImage()->image_spec();
  for (size_t i = 1; i < stages_.size(); ++i) spec.size *= stages_[i]->AsSuperResolution()->factor();
  spec.channels = last->image_spec().channels;
  spec.fit = last->image_spec().fit;
  return spec;
}

absl::StatusOr<std::vector<CascadeSampling>> CascadeStage::Resolve(const GenerateOptions& o) const {
  std::vector<CascadeSampling> s = sampling_;
  const size_t n = s.size();
  RETURN_IF_ERROR(Spread<int>(o.stage_steps, n, "steps", [&](size_t i, int v) { s[i].steps = v; }));
  RETURN_IF_ERROR(Spread<double>(o.stage_cfg, n, "guidance", [&](size_t i, double v) { s[i].cfg = v; }));
  RETURN_IF_ERROR(Spread<double>(o.stage_aug, n, "augmentation level", [&](size_t i, double v) { s[i].aug_level = v; }));
  for (const CascadeSampling& x : s) {
    if (x.steps < 1 || x.cfg < 0 || x.aug_level > 1) {
      return absl::InvalidArgumentError("steps must be >= 1, guidance >= 0 and augmentation levels in [0, 1]");
    }
  }
  return s;
}

absl::StatusOr<torch::Tensor> CascadeStage::Generate(const std::vector<std::string>& prompts,
                                                     const GenerateOptions& o) {
  ASSIGN_OR_RETURN(const std::vector<CascadeSampling> s, Resolve(o));
  GenerateOptions base;
  base.cfg = s[0].cfg;
  base.steps = s[0].steps;
  base.seed = o.seed;
  ASSIGN_OR_RETURN(torch::Tensor images, stages_[0]->AsTextToImage()->Generate(prompts, base));
  for (size_t i = 1; i < stages_.size(); ++i) {
    const UpsampleOptions up{s[i].cfg, s[i].steps, SeedFor(o.seed, 0x434153ull, i), s[i].aug_level};
    ASSIGN_OR_RETURN(images, stages_[i]->AsSuperResolution()->Upsample(images, prompts, up));
  }
  return images;
}

absl::Status CascadeStage::Preview(const PreviewData& data, const std::string& png_path) {
  return PreviewPrompts(*this, data, {sampling_[0].cfg, sampling_[0].steps, data.seed}, png_path);
}

nlohmann::ordered_json CascadeStage::Describe() const {
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (size_t i = 0; i < stages_.size(); ++i) {
    stages.push_back({{"name", names_[i]},
                      {"kind", stages_[i]->kind()},
                      {"steps", sampling_[i].steps},
                      {"cfg", sampling_[i].cfg},
                      {"aug_level", sampling_[i].aug_level},
                      {"model", stages_[i]->Describe()}});
  }
  return {{"image_size", image_spec().size}, {"stages", stages}};
}

}  // namespace loom::stages

// A cascade (Imagen): a base stage that makes small images from text, then
// super-resolution stages that each enlarge the previous one's images under the same
// prompt. Each stage is trained as its own run (an ldm stage, with stage.low_res for
// super-resolution); 'loom export cascade' chains their exports into one directory
// that `loom sample` and `loom eval prompts` load as this text-to-image model. It trains
// nothing: it is made at load time, not by `loom train`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stages/stage.h"

namespace loom::stages {

// How one stage of a cascade samples by default.
struct CascadeSampling {
  int steps = 50;
  double cfg = 4.0;
  double aug_level = -1;  // a super-resolution stage's input augmentation; < 0: the stage's own default
};

class CascadeStage : public Stage, public TextToImage {
 public:
  // `stages[0]` makes images from text; every later stage upsamples the images of the
  // one before (its input side and channels must match them). `names` say which is
  // which in errors; `sampling` holds one entry per stage.
  static absl::StatusOr<std::shared_ptr<CascadeStage>> Make(std::vector<std::shared_ptr<Stage>> stages,
                                                            std::vector<std::string> names,
                                                            std::vector<CascadeSampling> sampling);

  std::string kind() const override { return "cascade"; }
  std::vector<Trainable> Trainables() override { return {}; }
  DataNeeds Needs() const override { return {}; }
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  nlohmann::ordered_json Describe() const override;
  TextToImage* AsTextToImage() override { return this; }

  ImageSpec image_spec() const override;
  // With options.stage_* empty, each stage's own settings; one value applies to every
  // stage; otherwise one per stage.
  absl::StatusOr<torch::Tensor> Generate(const std::vector<std::string>& prompts,
                                         const GenerateOptions& options) override;

  // The settings each stage will sample with under `options`, or an error when a list
  // has neither 0, 1 nor one value per stage, or a level is outside [0, 1].
  absl::StatusOr<std::vector<CascadeSampling>> Resolve(const GenerateOptions& options) const;
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<CascadeSampling>& sampling() const { return sampling_; }

 private:
  CascadeStage() = default;
  std::vector<std::shared_ptr<Stage>> stages_;
  std::vector<std::string> names_;
  std::vector<CascadeSampling> sampling_;
};

}  // namespace loom::stages

// `loom eval super-resolution`: a super-resolution stage on held-out images against
// bicubic enlargement of the same input (eval/super_resolution.h).
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "dist/placement.h"
#include "dist/runtime.h"
#include "eval/judge.h"
#include "eval/super_resolution.h"
#include "pipeline/model.h"

namespace loom::cli {
namespace {

absl::Status RunSuperResolution(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, data_dir, judge_dir, weights = "ema";
  eval::SuperResolutionEvalOptions o;
  int64_t steps = 25, seed = 0, samples = o.samples;
  double cfg = 1.0, aug = 0.0;
  ArgParser args(name, "Shrinks each held-out image to the stage's input side, upsamples it with the stage\n"
                       "--samples times and reports PSNR and SSIM of one sample and of the mean of the samples\n"
                       "against the real image, consistency (the output shrunk again vs the input) and, with\n"
                       "--judge, the Frechet distance of judge features to real images; each beside bicubic\n"
                       "enlargement of the same input. Last line: JSON.");
  args.Flag("model", &model_dir, "a super-resolution stage: an ldm run, checkpoint or export with stage.low_res")
      .Required();
  args.Flag("data", &data_dir, "dataset directory (a test split, e.g. datasets/fashion/test)").Required();
  args.Flag("judge", &judge_dir, "a judge made by 'loom eval classifier --image-size <the output side>'");
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("limit", &o.limit, "images to evaluate; 0 = all");
  args.Flag("samples", &samples, "samples per image (their mean is scored too)");
  args.Flag("steps", &steps, "sampling steps");
  args.Flag("cfg", &cfg, "classifier-free guidance scale (1 = none)");
  args.Flag("aug", &aug, "noise-augmentation level of the input in [0, 1]");
  args.Flag("batch", &o.batch, "images upsampled at once (at most)");
  args.Flag("seed", &seed, "noise seed, and which images when --limit is set");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  if (steps < 1 || cfg < 0 || aug < 0 || aug > 1 || samples < 1 || o.limit < 0 || o.batch < 1) {
    return absl::InvalidArgumentError(name + ": --steps >= 1, --cfg >= 0, --aug in [0, 1], --samples >= 1, "
                                      "--limit >= 0 and --batch >= 1 are needed");
  }
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, weights));
  stages::SuperResolution* sr = model.stage->AsSuperResolution();
  if (sr == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind + "' model that does not upsample; pass a "
                                      "super-resolution stage (an ldm run or export trained with stage.low_res)");
  }
  std::optional<eval::Judge> judge;
  if (!judge_dir.empty()) {
    ASSIGN_OR_RETURN(judge, eval::Judge::Load(judge_dir));
  }
  const stages::ImageSpec spec = sr->image_spec();
  o.data = data_dir;
  o.image_size = spec.size;
  o.channels = spec.channels;
  o.fit = spec.fit;
  o.low_res = sr->low_res();
  o.samples = static_cast<int>(samples);
  o.seed = static_cast<uint64_t>(seed);
  const auto upsample = [&](const torch::Tensor& low, const std::vector<std::string>& captions, uint64_t s) {
    return sr->Upsample(low, captions, {cfg, static_cast<int>(steps), s, aug});
  };
  log::Info() << "upsampling " << (o.limit > 0 ? std::to_string(o.limit) : std::string("all")) << " images of "
              << data_dir << " from " << o.low_res << "x" << o.low_res << " to " << o.image_size << "x" << o.image_size
              << " with " << model.source << " (" << o.samples << " samples each)";
  ASSIGN_OR_RETURN(eval::SuperResolutionResult r, eval::EvaluateSuperResolution(upsample, o, judge ? &*judge : nullptr));
  char line[512];
  std::snprintf(line, sizeof(line),
                "PSNR %.2f dB (mean of %d samples %.2f dB; bicubic %.2f dB), SSIM %.4f (mean %.4f; bicubic %.4f), "
                "consistency %.2f dB (bicubic %.2f dB)",
                r.sample.psnr, r.samples, r.mean.psnr, r.bicubic.psnr, r.sample.ssim, r.mean.ssim, r.bicubic.ssim,
                r.consistency, r.consistency_bicubic);
  log::Info() << line;
  if (r.judged) {
    log::Info() << "Frechet distance " << r.frechet << " (bicubic " << r.frechet_bicubic << ", real train vs test "
                << r.frechet_floor << ")";
  }
  nlohmann::ordered_json out = {{"model", model.source}, {"kind", model.kind}, {"step", model.step},
                                {"weights", model.weights}, {"data", data_dir}, {"low_res", o.low_res},
                                {"image_size", o.image_size}, {"steps", steps}, {"cfg", cfg}, {"aug_level", aug}};
  const nlohmann::ordered_json result = r.ToJson();
  for (const auto& item : result.items()) out[item.key()] = item.value();
  log::Info() << out.dump();
  return absl::OkStatus();
}

}  // namespace

Command SuperResolutionEvalCommand() {
  return {"eval super-resolution", "PSNR, SSIM, consistency and Frechet distance of a super-resolution stage vs bicubic",
          RunSuperResolution};
}

}  // namespace loom::cli

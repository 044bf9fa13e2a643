// `loom sample`: images for a prompt from a trained run (its newest checkpoint's moving
// average), a checkpoint, an export, a pipeline (a latent model with its VAE decoder) or
// a cascade (a base stage and super-resolution stages). The same seed gives the same
// images. With --image instead of --prompt, a model that makes variations (DALL-E 2's
// decoder) makes new images from the CLIP image embedding of each given image.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/sampling_flags.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/ingest/image_ops.h"
#include "data/pixels.h"
#include "eval/gif.h"
#include "eval/image_grid.h"
#include "pipeline/model.h"

namespace loom::cli {
namespace {

// The image file at `path` as a model of `spec` sees its inputs: [1, C, S, S] in [-1, 1].
// A larger or non-square image is centre-cropped and resized to the model's side; a
// smaller square one is fitted as the model's data was (padded or resized).
absl::StatusOr<torch::Tensor> ReadImage(const std::string& path, const stages::ImageSpec& spec) {
  absl::StatusOr<data::Image> rgb = data::DecodeToRgb(path);
  if (!rgb.ok()) {
    return absl::InvalidArgumentError("--image " + path + ": " + std::string(rgb.status().message()) +
                                      " (pass a PNG or JPEG file)");
  }
  data::Image image = *std::move(rgb);
  if (image.width != image.height || image.width > spec.size) {
    ASSIGN_OR_RETURN(image, data::CentreCropResize(image, static_cast<int>(spec.size)));
  }
  const int64_t C = spec.channels, pixels = static_cast<int64_t>(image.width) * image.height;
  if (C != 1 && C != 3) return absl::InvalidArgumentError("the model takes " + std::to_string(C) + "-channel images");
  std::vector<uint8_t> raw(pixels * C);
  for (int64_t i = 0; i < pixels; ++i) {
    const uint8_t* px = image.pixels.data() + i * 3;
    if (C == 3) {
      std::copy(px, px + 3, raw.data() + i * 3);
    } else {  // luma (ITU-R BT.601)
      raw[i] = static_cast<uint8_t>(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2] + 0.5);
    }
  }
  data::SampleSpec s;
  s.height = image.height;
  s.width = image.width;
  s.channels = static_cast<int>(C);
  return data::ModelPixels(raw.data(), 1, s, static_cast<int>(spec.size), spec.fit, {});
}

// Clips of a video model: n per prompt, as a PNG strip (one row per clip) and an animated
// GIF of them all side by side, one written at `out` and the other beside it.
absl::Status SampleClips(stages::TextToVideo& video, const pipeline::LoadedModel& model,
                         const std::vector<std::string>& prompts, int64_t n, int64_t frames,
                         const stages::GenerateOptions& options, const std::string& out) {
  if (frames == 0) frames = video.frames();
  RETURN_IF_ERROR(video.CheckFrames(frames));
  const std::filesystem::path path(out);
  if (path.extension() != ".gif" && path.extension() != ".png") {
    return absl::InvalidArgumentError("--out " + out + ": a video model writes a .gif (with a .png strip beside it) "
                                      "or a .png (with a .gif beside it)");
  }
  std::vector<std::string> rows;  // each prompt n times
  for (const std::string& p : prompts) rows.insert(rows.end(), n, p);
  ASSIGN_OR_RETURN(const torch::Tensor clips, video.GenerateClips(rows, options, frames));  // [B, T, C, H, W]
  const std::string png = std::filesystem::path(out).replace_extension(".png").string();
  const std::string gif = std::filesystem::path(out).replace_extension(".gif").string();
  RETURN_IF_ERROR(eval::WriteStrip(png, clips, 2));
  RETURN_IF_ERROR(eval::WriteGif(gif, eval::TileClips(clips, static_cast<int>(n)), 12, 3));
  log::Info() << "wrote " << gif << " and " << png << ": " << n << " clip(s) of " << frames << " frames of '"
              << prompts[0] << "'"
              << (prompts.size() > 1 ? " and " + std::to_string(prompts.size() - 1) + " more prompt(s)" : "")
              << " from " << model.source;
  const nlohmann::json prompt = prompts.size() == 1 ? nlohmann::json(prompts[0]) : nlohmann::json(prompts);
  log::Info() << nlohmann::json({{"gif", gif}, {"png", png}, {"prompt", prompt}, {"n", n}, {"frames", frames},
                                 {"steps", options.steps}, {"cfg", options.cfg}, {"seed", options.seed},
                                 {"model", model.source}, {"kind", model.kind}})
                     .dump();
  return absl::OkStatus();
}

absl::Status RunSample(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, out;
  std::vector<std::string> prompts, images;
  int64_t n = 4, seed = 0, frames = 0;
  SamplingFlags sampling;
  ArgParser args(name, "Generates images for a prompt from a run made by 'loom train' (the moving average\n"
                       "of its newest checkpoint), a checkpoint directory, an export, a pipeline or a cascade;\n"
                       "or, with --image, variations of an image from a model that makes them (unclip).");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory, an export, a pipeline or a cascade").Required();
  args.Flag("prompt", &prompts, "the caption to draw; repeat it for a grid with one column per prompt");
  args.Flag("image", &images, "an image (PNG or JPEG) to make variations of, instead of --prompt; repeatable: one "
                              "row per image, the image first");
  args.Flag("out", &out, "PNG file to write (a row of the n images; with several prompts, n rows)").Required();
  args.Flag("n", &n, "images (per prompt)");
  args.Flag("frames", &frames, "a video model: frames per clip (default: as trained)");
  sampling.Add(args);
  args.Flag("seed", &seed, "noise seed; the same seed gives the same images");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (prompts.empty() == images.empty()) {
    return absl::InvalidArgumentError(name + ": pass --prompt (images from text) or --image (variations), not " +
                                      (prompts.empty() ? "neither" : "both"));
  }
  const int64_t inputs = static_cast<int64_t>(prompts.empty() ? images.size() : prompts.size());
  if (n < 1 || n * inputs > 256) {
    return absl::InvalidArgumentError(name + ": --n must be at least 1, and --n x prompts (or images) at most 256");
  }
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, "ema"));
  stages::GenerateOptions options;
  options.seed = static_cast<uint64_t>(seed);
  RETURN_IF_ERROR(sampling.Apply(name, model, &options));
  if (!images.empty()) {
    stages::ImageVariation* varier = model.stage->AsImageVariation();
    if (varier == nullptr) {
      return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                        "' model, which does not make variations of images; pass an unclip run, "
                                        "export or pipeline");
    }
    std::vector<torch::Tensor> given, repeated;
    for (const std::string& path : images) {
      ASSIGN_OR_RETURN(torch::Tensor image, ReadImage(path, varier->image_spec()));
      given.push_back(image);
      for (int64_t k = 0; k < n; ++k) repeated.push_back(image);
    }
    ASSIGN_OR_RETURN(const torch::Tensor made, varier->Vary(torch::cat(repeated), options));
    std::vector<torch::Tensor> rows;  // each image, then its n variations
    for (size_t i = 0; i < given.size(); ++i) {
      rows.push_back(given[i]);
      rows.push_back(made.narrow(0, static_cast<int64_t>(i) * n, n));
    }
    RETURN_IF_ERROR(eval::WriteGrid(out, torch::cat(rows), static_cast<int>(n + 1)));
    log::Info() << "wrote " << out << ": " << n << " variation(s) of " << images[0]
                << (images.size() > 1 ? " and " + std::to_string(images.size() - 1) + " more image(s)" : "")
                << " from " << model.source;
    ASSIGN_OR_RETURN(const nlohmann::ordered_json settings, DescribeSampling(model, options));
    log::Info() << nlohmann::json({{"out", out}, {"images", images}, {"n", n}, {"steps", settings["steps"]},
                                   {"cfg", settings["cfg"]}, {"seed", seed}, {"model", model.source},
                                   {"kind", model.kind}})
                       .dump();
    return absl::OkStatus();
  }
  if (stages::TextToVideo* video = model.stage->AsTextToVideo(); video != nullptr) {
    return SampleClips(*video, model, prompts, n, frames, options, out);
  }
  if (frames != 0) {
    return absl::InvalidArgumentError(name + ": --frames is for video models; " + model_dir + " is a '" + model.kind +
                                      "' model");
  }
  stages::TextToImage* generator = model.stage->AsTextToImage();
  if (generator == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                      "' model, which does not make images from text; pass a text-to-image model "
                                      "(a dit or ldm run or export, a pipeline or a cascade)");
  }
  std::vector<std::string> rows;  // row r of the grid: every prompt once
  for (int64_t r = 0; r < n; ++r) rows.insert(rows.end(), prompts.begin(), prompts.end());
  ASSIGN_OR_RETURN(const torch::Tensor made, generator->Generate(rows, options));
  const int columns = prompts.size() == 1 ? static_cast<int>(n) : static_cast<int>(prompts.size());
  RETURN_IF_ERROR(eval::WriteGrid(out, made, columns));
  log::Info() << "wrote " << out << ": " << n << " image(s) of '" << prompts[0] << "'"
              << (prompts.size() > 1 ? " and " + std::to_string(prompts.size() - 1) + " more prompt(s)" : "")
              << " from " << model.source;
  ASSIGN_OR_RETURN(const nlohmann::ordered_json settings, DescribeSampling(model, options));
  const nlohmann::json prompt = prompts.size() == 1 ? nlohmann::json(prompts[0]) : nlohmann::json(prompts);
  log::Info() << nlohmann::json({{"out", out}, {"prompt", prompt}, {"n", n}, {"steps", settings["steps"]},
                                 {"cfg", settings["cfg"]},
                                 {"seed", seed}, {"model", model.source}, {"kind", model.kind}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

Command SampleCommand() {
  return {"sample", "generate images from a trained model (run, export or pipeline)", RunSample};
}

}  // namespace loom::cli

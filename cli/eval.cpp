// `loom eval classifier` trains the judge on a labelled dataset's train split and reports
// its test accuracy; `loom eval prompts` samples every class from prompt templates (or the
// phrases of a phrase file) and reports how often the judge sees the prompted class, and
// the Fréchet distance of the samples' judge features to the real test images (beside the
// real-vs-real floor); `loom eval reconstruction` reports an autoencoder's PSNR and SSIM on
// held-out images; `loom eval zero-shot` classifies a labelled dataset by a CLIP model's
// class prompts and reports caption retrieval; `loom eval prior` measures a diffusion
// prior's predicted image embeddings against the real ones.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/sampling_flags.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/manifest.h"
#include "dist/placement.h"
#include "dist/runtime.h"
#include "eval/judge.h"
#include "eval/prompt_eval.h"
#include "eval/prior_eval.h"
#include "eval/reconstruction.h"
#include "eval/video_eval.h"
#include "eval/zero_shot.h"
#include "pipeline/model.h"

namespace loom::cli {
namespace {

absl::Status RunClassifier(const std::string& name, const std::vector<std::string>& argv) {
  eval::JudgeTrainOptions o;
  int64_t image_size = o.image_size, seed = 0;
  ArgParser args(name, "Trains the judge, a small CNN classifier, on DIR/train and reports its accuracy\n"
                       "on DIR/test (DIR as made by 'loom data fashion-mnist'). Last line: JSON.");
  args.Flag("data", &o.data, "dataset directory with train/ and test/").Required();
  args.Flag("out", &o.out, "judge directory to write").Required();
  args.Flag("image-size", &image_size, "side of the images the judged models make");
  args.Flag("fit", &o.fit, "how stored images become that size: pad or resize (as the model's data.fit)");
  args.Flag("epochs", &o.epochs, "passes over the training split");
  args.Flag("width", &o.width, "channels of the first conv stage (then 2x and 4x)");
  args.Flag("batch", &o.batch, "images per step");
  args.Flag("lr", &o.lr, "peak learning rate (AdamW, cosine decay)");
  args.Flag("seed", &seed, "seed of initialisation and data order");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  o.image_size = image_size;
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(eval::JudgeReport r, eval::TrainJudge(o));
  log::Info() << "judge written to " << o.out << ": test accuracy " << r.test_accuracy << " (" << r.test_samples
              << " images), " << static_cast<int64_t>(r.seconds) << " s";
  log::Info() << nlohmann::json({{"judge", o.out}, {"test_accuracy", r.test_accuracy}, {"train_samples", r.train_samples},
                                 {"test_samples", r.test_samples}, {"epochs", o.epochs}, {"seconds", r.seconds}})
                     .dump();
  return absl::OkStatus();
}

absl::Status RunPrompts(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, judge_dir, weights = "ema";
  eval::PromptEvalOptions o;
  int64_t seed = 0;
  SamplingFlags sampling;
  ArgParser args(name, "Samples --per-class images of every class the judge knows from each prompt template\n"
                       "(or each phrase of a --phrases file) and reports prompt_accuracy (the share the\n"
                       "judge assigns to the prompted class), per-class and per-template (per-phrase)\n"
                       "accuracy, and the Frechet distance of judge features to real test images beside\n"
                       "the real-train-vs-real-test floor. Last line: JSON.");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory, an export or a pipeline").Required();
  args.Flag("judge", &judge_dir, "judge directory made by 'loom eval classifier'").Required();
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("per-class", &o.per_class, "samples per class and template (or phrase)");
  sampling.Add(args);
  args.Flag("seed", &seed, "noise seed");
  args.Flag("batch", &o.batch, "images sampled at once");
  args.Flag("template", &o.templates,
            "prompt template, repeatable; {class} = class name, {a_class} = with a/an (default: two "
            "training wordings and two unseen ones)");
  args.Flag("phrases", &o.phrases,
            "JSON file of class name -> list of phrases, used verbatim as the prompts instead of templates "
            "(every class of the judge needs a non-empty list); not with --template");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  if (!o.phrases.empty() && !o.templates.empty()) {
    return absl::InvalidArgumentError("--phrases and --template exclude each other: the phrases of " + o.phrases +
                                      " replace the templates; pass one of them");
  }
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(eval::Judge judge, eval::Judge::Load(judge_dir));
  // The prompts, checked against the judge's classes before the model loads.
  ASSIGN_OR_RETURN(const eval::PromptSet prompts, eval::BuildPromptSet(o, judge.spec().classes));
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, weights));
  stages::TextToImage* generator = model.stage->AsTextToImage();
  if (generator == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind + "' model, which does not make images "
                                      "from text; pass a text-to-image model (a dit or ldm run or export, a pipeline or a cascade)");
  }
  stages::GenerateOptions generate;
  RETURN_IF_ERROR(sampling.Apply(name, model, &generate));
  o.steps = generate.steps;
  o.cfg = generate.cfg;
  ASSIGN_OR_RETURN(const nlohmann::ordered_json settings, DescribeSampling(model, generate));
  const stages::ImageSpec spec = generator->image_spec();
  RETURN_IF_ERROR(eval::CheckJudgeFits(judge, spec.size, spec.channels, spec.fit));
  log::Info() << "judging " << model.source << " (step " << model.step << ", " << model.weights << " weights)";
  const auto sample = [&](const std::vector<std::string>& prompts, uint64_t chunk_seed) {
    stages::GenerateOptions g = generate;
    g.seed = chunk_seed;
    return generator->Generate(prompts, g);
  };
  ASSIGN_OR_RETURN(eval::PromptEvalResult r, eval::EvaluatePrompts(sample, judge, prompts, o));
  for (const auto& t : r.templates) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-36s prompt accuracy %.3f",
                  (prompts.from_phrases ? t.templ : "\"" + t.templ + "\"").c_str(), t.accuracy);
    log::Info() << line;
  }
  for (const auto& p : r.phrases) {
    char line[512];
    std::snprintf(line, sizeof(line), "  %-12s %-36s accuracy %.3f", p.cls.c_str(), ("\"" + p.phrase + "\"").c_str(),
                  p.accuracy);
    log::Info() << line;
  }
  for (size_t c = 0; c < r.classes.size(); ++c) {
    char line[128];
    std::snprintf(line, sizeof(line), "  %-14s %.3f", r.classes[c].c_str(), r.per_class[c]);
    log::Info() << line;
  }
  log::Info() << "prompt accuracy " << r.prompt_accuracy << " over " << r.samples << " samples; Frechet distance "
              << r.frechet << " (real train vs real test: " << r.frechet_floor << "); " << static_cast<int64_t>(r.seconds)
              << " s";
  nlohmann::ordered_json out = {{"model", model.source}, {"kind", model.kind}, {"step", model.step},
                                {"weights", model.weights}, {"steps", settings["steps"]}, {"cfg", settings["cfg"]},
                                {"per_class", o.per_class}};
  if (prompts.from_phrases) out["phrase_file"] = o.phrases;
  const nlohmann::ordered_json result = r.ToJson();
  for (const auto& item : result.items()) out[item.key()] = item.value();
  log::Info() << out.dump();
  return absl::OkStatus();
}

absl::Status RunReconstruction(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, weights = "ema";
  eval::ReconstructionEvalOptions o;
  int64_t seed = 0;
  ArgParser args(name, "Encodes and decodes the images (or clips) of a dataset, as the loader gives them to\n"
                       "the model, with an autoencoder and reports PSNR and SSIM of the reconstructions\n"
                       "as 8-bit images, averaged over the images. On clips, the figures are per frame,\n"
                       "with the first frame apart and flicker (mean change between consecutive frames)\n"
                       "beside the real clips'; an image VAE given clips reconstructs each frame alone.\n"
                       "Last line: JSON with psnr and ssim.");
  args.Flag("model", &model_dir, "an autoencoder: a vae or video_vae run, checkpoint or export").Required();
  args.Flag("data", &o.data, "dataset directory (a test split, e.g. datasets/fashion/test)").Required();
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("limit", &o.limit, "images (clips) to evaluate; 0 = all");
  args.Flag("batch", &o.batch, "images (clips) at once (at most)");
  args.Flag("seed", &seed, "which images, when --limit is set");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, weights));
  stages::Autoencoder* ae = model.stage->AsAutoencoder();
  stages::VideoAutoencoder* video = model.stage->AsVideoAutoencoder();
  if (ae == nullptr && video == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                      "' model, not an autoencoder; pass a vae or video_vae run or export");
  }
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(o.data));
  const bool clips = manifest.spec.modality == data::Modality::kVideo;
  const stages::ImageSpec spec = video != nullptr ? video->image_spec() : ae->image_spec();
  o.image_size = spec.size;
  o.channels = spec.channels;
  o.fit = spec.fit;
  nlohmann::ordered_json out = {{"model", model.source}, {"kind", model.kind}, {"step", model.step},
                                {"weights", model.weights}, {"data", o.data}};
  nlohmann::ordered_json result;
  if (clips) {
    if (video != nullptr) RETURN_IF_ERROR(video->CheckFrames(manifest.spec.frames));
    if (o.batch == eval::ReconstructionEvalOptions{}.batch) o.batch = 16;  // clips are larger
    const eval::ClipReconstructor reconstruct = [&](const torch::Tensor& x) -> torch::Tensor {
      if (video != nullptr) {
        const torch::Tensor moments = video->EncodeClips(x);  // [B, 2z, t, h, w]
        return video->DecodeClips(moments.narrow(1, 0, moments.size(1) / 2));
      }
      // An image autoencoder: every frame on its own.
      const torch::Tensor frames = x.flatten(0, 1);  // [B*T, C, H, W]
      const torch::Tensor moments = ae->Encode(frames);
      return ae->Decode(moments.narrow(1, 0, moments.size(1) / 2)).to(torch::kCPU).view(x.sizes());
    };
    ASSIGN_OR_RETURN(eval::ClipReconstructionResult r, eval::EvaluateClipReconstruction(reconstruct, o));
    log::Info() << "reconstruction of " << r.clips << " clips of " << r.frames << " frames of " << o.data << " by "
                << model.source << " (step " << model.step << "): PSNR " << r.psnr << " dB per frame (first "
                << r.first_psnr << ", later " << r.later_psnr << "), SSIM " << r.ssim << "; flicker " << r.flicker
                << " (real " << r.flicker_real << "); " << static_cast<int64_t>(r.seconds) << " s";
    result = r.ToJson();
  } else {
    if (ae == nullptr) {
      // A video VAE on images: each image a one-frame clip.
      const eval::Reconstructor reconstruct = [&](const torch::Tensor& images) {
        const torch::Tensor moments = video->EncodeClips(images.unsqueeze(1));
        return video->DecodeClips(moments.narrow(1, 0, moments.size(1) / 2)).squeeze(1);
      };
      ASSIGN_OR_RETURN(eval::ReconstructionResult r, eval::EvaluateReconstruction(reconstruct, o));
      result = r.ToJson();
    } else {
      const eval::Reconstructor reconstruct = [&](const torch::Tensor& images) {
        const torch::Tensor moments = ae->Encode(images);  // [B, 2c, h, w]
        return ae->Decode(moments.narrow(1, 0, moments.size(1) / 2));
      };
      ASSIGN_OR_RETURN(eval::ReconstructionResult r, eval::EvaluateReconstruction(reconstruct, o));
      result = r.ToJson();
    }
    log::Info() << "reconstruction of " << result["images"] << " images of " << o.data << " by " << model.source
                << " (step " << model.step << "): PSNR " << result["psnr"] << " dB, SSIM " << result["ssim"];
  }
  for (const auto& item : result.items()) out[item.key()] = item.value();
  log::Info() << out.dump();
  return absl::OkStatus();
}

absl::Status RunVideo(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, judge_dir, weights = "ema";
  eval::VideoEvalOptions o;
  int64_t seed = 0;
  SamplingFlags sampling;
  ArgParser args(name, "Samples --per-prompt clips for every class the judge knows, every direction (left,\n"
                       "right, up, down) and every template, and reports the judge's per-frame class accuracy,\n"
                       "the clips' majority-vote accuracy, how often the judged class changes between frames,\n"
                       "and direction accuracy, read from the track of each clip's intensity-weighted centroid\n"
                       "(chance 0.25). With --real, the same reader and judge first run on real clips: the\n"
                       "ceilings. Last line: JSON with class_accuracy and direction_accuracy.");
  args.Flag("model", &model_dir, "a text-to-video model: a video_dit run, checkpoint, export or pipeline").Required();
  args.Flag("judge", &judge_dir, "judge directory made by 'loom eval classifier'").Required();
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("per-prompt", &o.per_prompt, "clips per template, class and direction");
  args.Flag("frames", &o.frames, "frames per clip (default: as trained)");
  sampling.Add(args);
  args.Flag("seed", &seed, "noise seed");
  args.Flag("batch", &o.batch, "clips sampled at once");
  args.Flag("template", &o.templates,
            "prompt template, repeatable; {class}, {a_class} (with a/an) and {direction} (default: two training "
            "wordings and two unseen ones)");
  args.Flag("real", &o.real, "a video test split (e.g. datasets/moving-fashion/test) to validate the reader and judge on");
  args.Flag("real-limit", &o.real_limit, "clips of --real");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  for (const std::string& t : o.templates) {
    if (t.find("{direction}") == std::string::npos) {
      return absl::InvalidArgumentError("--template '" + t + "' has no {direction}: a clip's prompt names its direction");
    }
  }
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(eval::Judge judge, eval::Judge::Load(judge_dir));
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, weights));
  stages::TextToVideo* video = model.stage->AsTextToVideo();
  if (video == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind + "' model, which does not make clips from "
                                      "text; pass a video_dit run, export or pipeline");
  }
  stages::GenerateOptions generate;
  generate.steps = 30;
  RETURN_IF_ERROR(sampling.Apply(name, model, &generate));
  if (o.frames == 0) o.frames = video->frames();
  RETURN_IF_ERROR(video->CheckFrames(o.frames));
  o.steps = generate.steps;
  o.cfg = generate.cfg;
  const stages::ImageSpec spec = video->image_spec();
  RETURN_IF_ERROR(eval::CheckJudgeFits(judge, spec.size, spec.channels, spec.fit));
  log::Info() << "judging " << model.source << " (step " << model.step << ", " << model.weights << " weights), clips of "
              << o.frames << " frames";
  const auto sample = [&](const std::vector<std::string>& prompts, uint64_t chunk_seed) {
    stages::GenerateOptions g = generate;
    g.seed = chunk_seed;
    return video->GenerateClips(prompts, g, o.frames);
  };
  ASSIGN_OR_RETURN(eval::VideoEvalResult r, eval::EvaluateVideo(sample, judge, o));
  if (!o.real.empty()) {
    log::Info() << "real clips (" << r.real_clips << "): direction read right " << r.real_direction_accuracy
                << ", frames judged right " << r.real_class_accuracy << ", votes " << r.real_vote_accuracy;
  }
  for (const auto& t : r.templates) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-44s class %.3f  vote %.3f  direction %.3f", ("\"" + t.templ + "\"").c_str(),
                  t.class_accuracy, t.vote_accuracy, t.direction_accuracy);
    log::Info() << line;
  }
  log::Info() << "class accuracy " << r.class_accuracy << " per frame (vote " << r.vote_accuracy << ", flips "
              << r.class_flips << "), direction accuracy " << r.direction_accuracy << " over " << r.clips
              << " clips; " << static_cast<int64_t>(r.seconds) << " s";
  nlohmann::ordered_json out = {{"model", model.source}, {"kind", model.kind},   {"step", model.step},
                                {"weights", model.weights}, {"steps", o.steps}, {"cfg", o.cfg},
                                {"per_prompt", o.per_prompt}};
  const nlohmann::ordered_json result = r.ToJson();
  for (const auto& item : result.items()) out[item.key()] = item.value();
  log::Info() << out.dump();
  return absl::OkStatus();
}

absl::Status RunZeroShot(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, weights = "ema";
  eval::ZeroShotOptions o;
  int64_t seed = 0;
  ArgParser args(name, "Classifies the images of a labelled dataset (its label names are the classes) by\n"
                       "the nearest class prompt in a CLIP model's joint embedding, each class's prompts\n"
                       "of all --template wordings averaged, and reports accuracy (also per template and\n"
                       "per class) and recall@1/@5 of each image's own caption among the dataset's\n"
                       "distinct captions. Last line: JSON with accuracy.");
  args.Flag("model", &model_dir, "a clip run, checkpoint or export").Required();
  args.Flag("data", &o.data, "labelled dataset directory (a test split, e.g. datasets/fashion/test)").Required();
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("template", &o.templates,
            "class prompt template, repeatable; {class} = class name, {a_class} = with a/an (default: two "
            "training wordings and two unseen ones)");
  args.Flag("limit", &o.limit, "images to evaluate; 0 = all");
  args.Flag("batch", &o.batch, "images at once (at most)");
  args.Flag("seed", &seed, "which images, when --limit is set");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, weights));
  stages::JointEmbedding* clip = model.stage->AsJointEmbedding();
  if (clip == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                      "' model, which does not embed images and text together; pass a clip run or "
                                      "export");
  }
  const stages::ImageSpec spec = clip->image_spec();
  o.image_size = spec.size;
  o.channels = spec.channels;
  o.fit = spec.fit;
  const auto images = [&](const torch::Tensor& x) { return clip->EmbedImages(x); };
  const auto texts = [&](const std::vector<std::string>& c) { return clip->EmbedTexts(c); };
  ASSIGN_OR_RETURN(eval::ZeroShotResult r, eval::EvaluateZeroShot(images, texts, o));
  for (const auto& t : r.templates) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-36s accuracy %.3f", ("\"" + t.templ + "\"").c_str(), t.accuracy);
    log::Info() << line;
  }
  for (size_t c = 0; c < r.classes.size(); ++c) {
    char line[128];
    std::snprintf(line, sizeof(line), "  %-14s %.3f", r.classes[c].c_str(), r.per_class[c]);
    log::Info() << line;
  }
  log::Info() << "zero-shot accuracy " << r.accuracy << " over " << r.images << " images of " << o.data
              << " (templates averaged); caption recall@1 " << r.recall_at_1 << ", @5 " << r.recall_at_5 << " among "
              << r.captions << " distinct captions; " << static_cast<int64_t>(r.seconds) << " s";
  nlohmann::ordered_json out = {{"model", model.source}, {"kind", model.kind}, {"step", model.step},
                                {"weights", model.weights}, {"data", o.data}};
  const nlohmann::ordered_json result = r.ToJson();
  for (const auto& item : result.items()) out[item.key()] = item.value();
  log::Info() << out.dump();
  return absl::OkStatus();
}

absl::Status RunPrior(const std::string& name, const std::vector<std::string>& argv) {
  std::string model_dir, weights = "ema";
  eval::PriorEvalOptions o;
  stages::PriorSampleOptions sampling;
  double cfg = -1;
  int64_t steps = 0, candidates = 0, seed = 0;
  ArgParser args(name, "Predicts the CLIP image embedding of each caption of a labelled dataset with a\n"
                       "diffusion prior and reports the mean cosine of (text, real image), (predicted,\n"
                       "real image), (predicted, an image of another class) and between two real images\n"
                       "of the same class, and the zero-shot accuracy of the predicted embeddings beside\n"
                       "that of the real ones. Last line: JSON.");
  args.Flag("model", &model_dir, "a prior run, checkpoint or export").Required();
  args.Flag("data", &o.data, "labelled dataset directory (a test split, e.g. datasets/fashion/test)").Required();
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("limit", &o.limit, "images to evaluate; 0 = all");
  args.Flag("cfg", &cfg, "guidance scale (default: the prior's stage.sample_cfg)");
  args.Flag("steps", &steps, "sampling steps (default: the prior's stage.sample_steps)");
  args.Flag("candidates", &candidates, "embeddings drawn per caption (default: the prior's stage.candidates)");
  args.Flag("template", &o.templates, "class prompt template of the zero-shot accuracy, repeatable (default: "
                                      "two training wordings and two unseen ones)");
  args.Flag("seed", &seed, "noise seed, and which images when --limit is set");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  ASSIGN_OR_RETURN(pipeline::LoadedModel model, pipeline::LoadModel(model_dir, weights));
  stages::EmbeddingPrior* prior = model.stage->AsEmbeddingPrior();
  if (prior == nullptr) {
    return absl::InvalidArgumentError(model_dir + " is a '" + model.kind +
                                      "' model, not a diffusion prior; pass a prior run or export");
  }
  const stages::PriorSampleOptions defaults = prior->default_sampling();
  sampling.cfg = cfg >= 0 ? cfg : defaults.cfg;
  sampling.steps = steps > 0 ? static_cast<int>(steps) : defaults.steps;
  sampling.candidates = candidates > 0 ? static_cast<int>(candidates) : defaults.candidates;
  sampling.seed = static_cast<uint64_t>(seed);
  o.seed = static_cast<uint64_t>(seed);
  stages::JointEmbedding* clip = prior->clip();
  const stages::ImageSpec spec = clip->image_spec();
  o.image_size = spec.size;
  o.channels = spec.channels;
  o.fit = spec.fit;
  ASSIGN_OR_RETURN(
      eval::PriorEvalResult r,
      eval::EvaluatePrior([&](const torch::Tensor& x) { return clip->EmbedImages(x); },
                          [&](const std::vector<std::string>& c) { return clip->EmbedTexts(c); },
                          [&](const std::vector<std::string>& c) { return prior->PredictImageEmbeddings(c, sampling); },
                          o));
  log::Info() << "prior " << model.source << " (step " << model.step << ") on " << r.images << " images of " << o.data
              << ": cos(predicted, real) " << r.predicted_image << " vs two real images of a class "
              << r.same_class_images << ", text-image " << r.text_image << ", predicted-unrelated "
              << r.predicted_unrelated << "; zero-shot of predicted " << r.zero_shot_predicted << " vs real "
              << r.zero_shot_real << "; " << static_cast<int64_t>(r.seconds) << " s";
  nlohmann::ordered_json out = {{"model", model.source}, {"kind", model.kind}, {"step", model.step},
                                {"weights", model.weights}, {"data", o.data}, {"cfg", sampling.cfg},
                                {"steps", sampling.steps}, {"candidates", sampling.candidates}};
  const nlohmann::ordered_json result = r.ToJson();
  for (const auto& item : result.items()) out[item.key()] = item.value();
  log::Info() << out.dump();
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> EvalCommands() {
  return {
      {"eval classifier", "train the judge classifier; reports its test accuracy", RunClassifier},
      {"eval prompts", "prompt accuracy and Frechet distance of a model's samples", RunPrompts},
      {"eval reconstruction", "PSNR and SSIM of an autoencoder's reconstructions", RunReconstruction},
      {"eval video", "class and direction accuracy of a text-to-video model's clips, by the judge", RunVideo},
      {"eval zero-shot", "zero-shot accuracy and caption retrieval of a CLIP model", RunZeroShot},
      {"eval prior", "cosines and zero-shot accuracy of a diffusion prior's predicted embeddings", RunPrior},
  };
}

}  // namespace loom::cli

// `loom eval classifier` trains the judge on a labelled dataset's train split and reports
// its test accuracy; `loom eval prompts` samples every class from prompt templates and
// reports how often the judge sees the prompted class, and the Fréchet distance of the
// samples' judge features to the real test images (beside the real-vs-real floor).
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "dist/placement.h"
#include "dist/runtime.h"
#include "eval/judge.h"
#include "train/export.h"
#include "train/prompt_eval.h"

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
  train::PromptEvalOptions o;
  int64_t steps = o.steps, seed = 0;
  ArgParser args(name, "Samples --per-class images of every class the judge knows from each prompt template\n"
                       "and reports prompt_accuracy (the share the judge assigns to the prompted class),\n"
                       "per-class and per-template accuracy, and the Frechet distance of judge features\n"
                       "to real test images beside the real-train-vs-real-test floor. Last line: JSON.");
  args.Flag("model", &model_dir, "runs/NAME, a checkpoint directory or an export").Required();
  args.Flag("judge", &judge_dir, "judge directory made by 'loom eval classifier'").Required();
  args.Flag("weights", &weights, "ema or raw (runs and checkpoints)");
  args.Flag("per-class", &o.per_class, "samples per class and template");
  args.Flag("steps", &steps, "DDIM steps");
  args.Flag("cfg", &o.cfg, "classifier-free guidance scale");
  args.Flag("seed", &seed, "noise seed");
  args.Flag("batch", &o.batch, "images sampled at once");
  args.Flag("template", &o.templates,
            "prompt template; {class} = class name, {a_class} = with a/an (default: two "
            "training wordings and two unseen ones)");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  o.steps = static_cast<int>(steps);
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(eval::Judge judge, eval::Judge::Load(judge_dir));
  ASSIGN_OR_RETURN(train::ModelBundle bundle, train::LoadModel(model_dir, weights));
  ASSIGN_OR_RETURN(models::DiTConfig dit, train::BundleDiTConfig(bundle));
  RETURN_IF_ERROR(train::CheckJudgeFits(judge, dit.image_size, dit.channels, bundle.options.data.fit));
  ASSIGN_OR_RETURN(train::DiTStage stage, train::BuildStage(bundle));
  ASSIGN_OR_RETURN(auto tokenizer, data::Tokenizer::FromBytes(bundle.tokenizer_model, bundle.source + "/tokenizer.model"));
  log::Info() << "judging " << bundle.source << " (step " << bundle.step << ", " << bundle.weights << " weights)";
  ASSIGN_OR_RETURN(train::PromptEvalResult r,
                   train::EvaluatePrompts(*stage, *tokenizer, bundle.options.data.max_tokens, judge, o));
  for (const auto& t : r.templates) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-36s prompt accuracy %.3f", ("\"" + t.templ + "\"").c_str(), t.accuracy);
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
  nlohmann::ordered_json out = {{"model", bundle.source}, {"step", bundle.step}, {"weights", bundle.weights},
                                {"steps", o.steps},       {"cfg", o.cfg},       {"per_class", o.per_class}};
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
  };
}

}  // namespace loom::cli

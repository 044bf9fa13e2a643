// The experiment's schema (see experiment.h).
#include "train/experiment.h"

#include "stages/registry.h"

namespace loom::train {

void ExperimentOptions::Describe(config::Fields<ExperimentOptions>& f) {
  using O = ExperimentOptions;
  f.Add("run", &O::run, "run identity and outputs");
  f.Add("data", &O::data, "training data and loader");
  config::AddTagged(f, "stage", &O::stage, "what is trained", stages::StageKindOptions);
  f.Add("optim", &O::optim, "optimizer and learning-rate schedule (of the main trainable)");
  f.Add("train", &O::train, "training loop");
  f.Add("dist", &O::dist, "distribution strategy");
  f.Check([](const O& o) -> std::string {
    if (o.data.batch_size % o.train.grad_accum != 0) {
      return "data.batch_size " + std::to_string(o.data.batch_size) +
             " must be divisible by train.grad_accum " + std::to_string(o.train.grad_accum);
    }
    return "";
  });
}

}  // namespace loom::train

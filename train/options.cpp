// Schemas of the run, optim and train sections (see options.h).
#include "train/options.h"

namespace loom::train {

void RunOptions::Describe(config::Fields<RunOptions>& f) {
  using O = RunOptions;
  f.Add("name", &O::name, "run name; outputs go to <dir>/<name>/")
      .Rule(config::NonEmpty())
      .Rule([](const std::string& v) -> std::string {
        return v.find('/') == std::string::npos && v != "." && v != ".."
                   ? ""
                   : "must be a plain name (no '/')";
      });
  f.Add("dir", &O::dir, "directory that holds run directories").Rule(config::NonEmpty());
  f.Add("seed", &O::seed, "seed of every random draw (data order, noise, init)")
      .Rule(config::AtLeast(0));
}

void OptimOptions::Describe(config::Fields<OptimOptions>& f) {
  using O = OptimOptions;
  f.Add("lr", &O::lr, "peak learning rate (AdamW)").Rule(config::Between(1e-12, 10));
  f.Add("betas", &O::betas, "AdamW betas").Rule(config::Each(config::InHalfOpen(0, 1)));
  f.Add("eps", &O::eps, "AdamW epsilon").Rule(config::Positive());
  f.Add("weight_decay", &O::weight_decay, "AdamW decoupled weight decay")
      .Rule(config::Between(0, 1));
  f.Add("warmup", &O::warmup, "steps of linear warmup from 0 to lr").Rule(config::AtLeast(0));
  f.Add("decay", &O::decay, "LR after warmup: cosine down to min_lr_ratio*lr, or constant")
      .Rule(config::OneOf({"cosine", "constant"}));
  f.Add("min_lr_ratio", &O::min_lr_ratio, "final LR of the cosine decay, as a share of lr")
      .Rule(config::Between(0, 1));
  f.Add("clip_grad", &O::clip_grad, "clip the global gradient norm to this; 0 = off")
      .Rule(config::AtLeast(0));
}

void TrainOptions::Describe(config::Fields<TrainOptions>& f) {
  using O = TrainOptions;
  f.Add("steps", &O::steps, "optimizer steps in total (raise it to extend a finished run)")
      .Rule(config::Positive());
  f.Add("grad_accum", &O::grad_accum, "micro-batches per optimizer step")
      .Rule(config::Between(1, 4096));
  f.Add("ema", &O::ema, "EMA decay of the weights used for sampling; 0 = off")
      .Rule(config::InHalfOpen(0, 1));
  f.Add("precision", &O::precision, "fp32, or bf16 autocast").Rule(config::OneOf({"fp32", "bf16"}));
  f.Add("log_every", &O::log_every, "steps between progress lines and metrics.jsonl rows")
      .Rule(config::Positive());
  f.Add("sample_every", &O::sample_every, "steps between previews (sample grids, reconstructions); 0 = never")
      .Rule(config::AtLeast(0));
  f.Add("eval_every", &O::eval_every, "steps between evaluations (the stage's own, see stage.eval); 0 = never")
      .Rule(config::AtLeast(0));
  f.Add("checkpoint_every", &O::checkpoint_every, "steps between checkpoints; 0 = only at the end")
      .Rule(config::AtLeast(0));
  f.Add("keep_checkpoints", &O::keep_checkpoints, "newest checkpoints kept on disk")
      .Rule(config::Between(1, 1000));
  f.Add("on_nan", &O::on_nan, "a non-finite loss stops the run (naming step and rank) or skips the step")
      .Rule(config::OneOf({"stop", "skip"}));
  f.Add("tensorboard", &O::tensorboard,
        "rank 0 also writes metrics.jsonl's figures and the previews as TensorBoard events in the run directory");
}

}  // namespace loom::train

// ExperimentOptions: the whole config tree of one experiment, one section per
// component: run, data, stage (a kind and its options: stages/registry.h), optim (the
// main trainable's), train, dist.
#pragma once

#include "core/config/schema.h"
#include "core/config/tagged.h"
#include "data/options.h"
#include "dist/options.h"
#include "train/optim.h"
#include "train/options.h"

namespace loom::train {

struct ExperimentOptions {
  RunOptions run;
  data::DataOptions data;
  config::Tagged stage;
  OptimOptions optim;
  TrainOptions train;
  dist::DistOptions dist;

  static void Describe(config::Fields<ExperimentOptions>& f);
};

}  // namespace loom::train

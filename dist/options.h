// dist: the `dist:` section of an experiment config (strategy, backend, limits).
#pragma once

#include <string>

#include "core/config/schema.h"

namespace loom::dist {

struct DistOptions {
  std::string strategy = "ddp";
  std::string backend = "auto";
  double bucket_mb = 25.0;
  bool overlap = true;
  double timeout_s = 600.0;

  static void Describe(config::Fields<DistOptions>& f);
};

}  // namespace loom::dist

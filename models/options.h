// models: the options of the networks (architecture and sizes), as sections of the
// stage kinds that use them (stage.model of a dit stage, ...).
#pragma once

#include <string>

#include "core/config/schema.h"

namespace loom::models {

struct TextEncoderOptions {
  int width = 256;
  int depth = 2;
  int heads = 4;
  int vocab = 1024;

  static void Describe(config::Fields<TextEncoderOptions>& f);
};

struct DiTOptions {
  std::string size = "";  // a registered size ("S/4"); empty: the numbers below
  int patch = 4;
  int width = 256;
  int depth = 6;
  int heads = 4;
  double mlp_ratio = 4.0;
  TextEncoderOptions text;

  static void Describe(config::Fields<DiTOptions>& f);
};

}  // namespace loom::models

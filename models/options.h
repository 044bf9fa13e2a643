// models: the options of the networks (architecture and sizes), as sections of the
// stage kinds that use them (stage.model of a dit stage, ...).
#pragma once

#include <string>
#include <vector>

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

// The KL autoencoder (models/vae.h), after latent diffusion's ddconfig.
struct VaeOptions {
  int ch = 64;                       // channels of the first level
  std::vector<int> ch_mult{1, 2, 2};  // per level; f = 2^(levels - 1)
  int num_res_blocks = 1;
  int z_channels = 4;
  bool attention = true;             // attention in the middle blocks
  int groups = 32;                   // GroupNorm groups
  double dropout = 0.0;

  static void Describe(config::Fields<VaeOptions>& f);
};

// The patch discriminator (models/vae.h).
struct DiscriminatorOptions {
  int width = 64;  // channels of the first layer (then doubling, at most 8x)
  int layers = 2;  // stride-2 layers

  static void Describe(config::Fields<DiscriminatorOptions>& f);
};

}  // namespace loom::models

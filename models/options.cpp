// Schemas of the network options (see options.h).
#include "models/options.h"

namespace loom::models {
namespace {

std::string HeadsDivideWidth(int width, int heads) {
  if (width % heads == 0) return "";
  return "width " + std::to_string(width) + " must be divisible by heads " +
         std::to_string(heads) + " (each head gets width/heads channels)";
}

}  // namespace

void TextEncoderOptions::Describe(config::Fields<TextEncoderOptions>& f) {
  using O = TextEncoderOptions;
  f.Add("width", &O::width, "text token width").Rule(config::Between(8, 8192));
  f.Add("depth", &O::depth, "text Transformer layers").Rule(config::Between(1, 128));
  f.Add("heads", &O::heads, "text attention heads").Rule(config::Between(1, 128));
  f.Add("vocab", &O::vocab, "tokenizer vocabulary size").Rule(config::Between(16, 1 << 20));
  f.Check([](const O& o) { return HeadsDivideWidth(o.width, o.heads); });
}

void DiTOptions::Describe(config::Fields<DiTOptions>& f) {
  using O = DiTOptions;
  f.Add("size", &O::size, "a registered size such as S/4; empty: patch/width/depth/heads below");
  f.Add("patch", &O::patch, "patch side in pixels (or latent cells)").Rule(config::Between(1, 64));
  f.Add("width", &O::width, "token width").Rule(config::Between(8, 16384));
  f.Add("depth", &O::depth, "Transformer blocks").Rule(config::Between(1, 256));
  f.Add("heads", &O::heads, "attention heads").Rule(config::Between(1, 256));
  f.Add("mlp_ratio", &O::mlp_ratio, "MLP hidden width / token width").Rule(config::Between(0.5, 16));
  f.Add("text", &O::text, "text encoder");
  f.Check([](const O& o) { return HeadsDivideWidth(o.width, o.heads); });
}

void VaeOptions::Describe(config::Fields<VaeOptions>& f) {
  using O = VaeOptions;
  f.Add("ch", &O::ch, "channels of the first level").Rule(config::Between(4, 4096));
  f.Add("ch_mult", &O::ch_mult, "channel multiplier per level; f = 2^(levels - 1)")
      .Rule([](const std::vector<int>& v) -> std::string {
        if (v.empty() || v.size() > 6) return "must list 1 to 6 levels";
        for (int m : v) {
          if (m < 1 || m > 64) return "must hold multipliers in [1, 64]";
        }
        return "";
      });
  f.Add("num_res_blocks", &O::num_res_blocks, "ResNet blocks per level").Rule(config::Between(1, 16));
  f.Add("z_channels", &O::z_channels, "latent channels").Rule(config::Between(1, 256));
  f.Add("attention", &O::attention, "self-attention in the middle blocks");
  f.Add("groups", &O::groups, "GroupNorm groups (divide every level's channels)").Rule(config::Between(1, 256));
  f.Add("dropout", &O::dropout, "dropout in the ResNet blocks").Rule(config::InHalfOpen(0, 1));
}

void DiscriminatorOptions::Describe(config::Fields<DiscriminatorOptions>& f) {
  using O = DiscriminatorOptions;
  f.Add("width", &O::width, "channels of the first layer").Rule(config::Between(4, 4096));
  f.Add("layers", &O::layers, "stride-2 layers (each halves the side)").Rule(config::Between(1, 8));
}

}  // namespace loom::models

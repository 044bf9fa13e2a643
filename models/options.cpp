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

}  // namespace loom::models

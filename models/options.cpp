// Schemas of the network options (see options.h).
#include "models/options.h"

namespace loom::models {
namespace {

std::string HeadsDivideWidth(int width, int heads) {
  if (width % heads == 0) return "";
  return "width " + std::to_string(width) + " must be divisible by heads " +
         std::to_string(heads) + " (each head gets width/heads channels)";
}

// A channel multiplier per level of a U-shaped network (the VAE's, the U-Net's).
std::string LevelMultipliers(const std::vector<int>& v) {
  if (v.empty() || v.size() > 6) return "must list 1 to 6 levels";
  for (int m : v) {
    if (m < 1 || m > 64) return "must hold multipliers in [1, 64]";
  }
  return "";
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

void ClipOptions::Describe(config::Fields<ClipOptions>& f) {
  using O = ClipOptions;
  f.Add("patch", &O::patch, "image patch side in pixels").Rule(config::Between(1, 64));
  f.Add("width", &O::width, "image tower token width").Rule(config::Between(8, 16384));
  f.Add("depth", &O::depth, "image tower Transformer blocks").Rule(config::Between(1, 256));
  f.Add("heads", &O::heads, "image tower attention heads").Rule(config::Between(1, 256));
  f.Add("embed_dim", &O::embed_dim, "width of the joint image-text embedding").Rule(config::Between(2, 16384));
  f.Add("text", &O::text, "the text tower (pooled at the last real token, then projected)");
  f.Check([](const O& o) { return HeadsDivideWidth(o.width, o.heads); });
}

void PriorOptions::Describe(config::Fields<PriorOptions>& f) {
  using O = PriorOptions;
  f.Add("width", &O::width, "token width").Rule(config::Between(8, 16384));
  f.Add("depth", &O::depth, "causal Transformer blocks").Rule(config::Between(1, 256));
  f.Add("heads", &O::heads, "attention heads").Rule(config::Between(1, 256));
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
      .Rule(LevelMultipliers);
  f.Add("num_res_blocks", &O::num_res_blocks, "ResNet blocks per level").Rule(config::Between(1, 16));
  f.Add("z_channels", &O::z_channels, "latent channels").Rule(config::Between(1, 256));
  f.Add("attention", &O::attention, "self-attention in the middle blocks");
  f.Add("groups", &O::groups, "GroupNorm groups (divide every level's channels)").Rule(config::Between(1, 256));
  f.Add("dropout", &O::dropout, "dropout in the ResNet blocks").Rule(config::InHalfOpen(0, 1));
}

void VideoVaeOptions::Describe(config::Fields<VideoVaeOptions>& f) {
  using O = VideoVaeOptions;
  f.Add("ch", &O::ch, "channels of the first level").Rule(config::Between(4, 4096));
  f.Add("ch_mult", &O::ch_mult, "channel multiplier per level; spatial factor 2^(levels - 1)").Rule(LevelMultipliers);
  f.Add("num_res_blocks", &O::num_res_blocks, "ResNet blocks per level").Rule(config::Between(1, 16));
  f.Add("z_channels", &O::z_channels, "latent channels").Rule(config::Between(1, 256));
  f.Add("temporal_down", &O::temporal_down,
        "downsampling levels that also halve time (temporal factor 2^n: clips of 1 + k 2^n frames)")
      .Rule(config::Between(0, 8));
  f.Add("groups", &O::groups, "GroupNorm groups (divide every level's channels); statistics per frame")
      .Rule(config::Between(1, 256));
  f.Check([](const O& o) -> std::string {
    if (o.temporal_down <= static_cast<int>(o.ch_mult.size()) - 1) return "";
    return "temporal_down is " + std::to_string(o.temporal_down) + " but only " +
           std::to_string(o.ch_mult.size() - 1) + " levels downsample; lower it or add a level to ch_mult";
  });
}

void DiscriminatorOptions::Describe(config::Fields<DiscriminatorOptions>& f) {
  using O = DiscriminatorOptions;
  f.Add("width", &O::width, "channels of the first layer").Rule(config::Between(4, 4096));
  f.Add("layers", &O::layers, "stride-2 layers (each halves the side)").Rule(config::Between(1, 8));
}

void UNetOptions::Describe(config::Fields<UNetOptions>& f) {
  using O = UNetOptions;
  f.Add("size", &O::size, "a registered size (XS, S, B); empty: the numbers below");
  f.Add("model_channels", &O::model_channels, "channels of the first level").Rule(config::Between(8, 4096));
  f.Add("channel_mult", &O::channel_mult, "channel multiplier per level; each level after the first halves the side")
      .Rule(LevelMultipliers);
  f.Add("num_res_blocks", &O::num_res_blocks, "ResBlocks per level").Rule(config::Between(1, 16));
  f.Add("attention_resolutions", &O::attention_resolutions,
        "downsampling factors (1 = full resolution, 2, 4, ...) at which a spatial transformer follows each ResBlock");
  f.Add("heads", &O::heads, "attention heads of the spatial transformers").Rule(config::Between(1, 256));
  f.Add("transformer_depth", &O::transformer_depth, "transformer blocks per spatial transformer").Rule(config::Between(1, 64));
  f.Add("groups", &O::groups, "GroupNorm groups (divide every level's channels)").Rule(config::Between(1, 256));
  f.Add("dropout", &O::dropout, "dropout in the ResBlocks").Rule(config::InHalfOpen(0, 1));
  f.Add("extra_in_channels", &O::extra_in_channels, "input channels beyond x_t (a low-resolution image to upsample)")
      .Rule(config::Between(0, 1024));
  f.Add("embed_dim", &O::embed_dim, "width of an extra conditioning vector added to the timestep embedding; 0 = none")
      .Rule(config::Between(0, 65536));
  f.Add("embed_tokens", &O::embed_tokens, "context tokens made from that vector (0: added to the timestep only)")
      .Rule(config::Between(0, 64));
}

void BertOptions::Describe(config::Fields<BertOptions>& f) {
  using O = BertOptions;
  f.Add("vocab_size", &O::vocab_size, "word-piece vocabulary size").Rule(config::Between(8, 1 << 22));
  f.Add("hidden_size", &O::hidden_size, "token width (the context width of cross-attention)")
      .Rule(config::Between(8, 16384));
  f.Add("num_hidden_layers", &O::num_hidden_layers, "Transformer layers").Rule(config::Between(1, 256));
  f.Add("num_attention_heads", &O::num_attention_heads, "attention heads").Rule(config::Between(1, 256));
  f.Add("intermediate_size", &O::intermediate_size, "feed-forward width").Rule(config::Between(8, 65536));
  f.Add("max_position_embeddings", &O::max_position_embeddings, "learned positions (the longest input)")
      .Rule(config::Between(2, 1 << 16));
  f.Add("type_vocab_size", &O::type_vocab_size, "token type (segment) embeddings").Rule(config::Between(1, 16));
  f.Add("layer_norm_eps", &O::layer_norm_eps, "LayerNorm epsilon").Rule(config::Between(0, 1));
  f.Check([](const O& o) { return HeadsDivideWidth(o.hidden_size, o.num_attention_heads); });
}

}  // namespace loom::models

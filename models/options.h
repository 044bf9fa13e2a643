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

// CLIP's two towers (models/clip.h): a ViT over image patches and a Transformer over
// caption tokens, projected into one embedding space.
struct ClipOptions {
  int patch = 4;        // image patch side in pixels
  int width = 128;      // image tower token width
  int depth = 4;        // image tower blocks
  int heads = 4;
  int embed_dim = 128;  // the joint embedding
  TextEncoderOptions text{.width = 128, .depth = 4, .heads = 4, .vocab = 1024};

  static void Describe(config::Fields<ClipOptions>& f);
};

// DALL-E 2's diffusion prior (models/prior.h): a causal Transformer over the caption's
// tokens, its CLIP embedding, the timestep and the noised image embedding.
struct PriorOptions {
  int width = 256;
  int depth = 6;
  int heads = 4;

  static void Describe(config::Fields<PriorOptions>& f);
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

// The causal video autoencoder (models/video_vae.h).
struct VideoVaeOptions {
  int ch = 32;                        // channels of the first level
  std::vector<int> ch_mult{1, 2, 2};  // per level; spatial factor 2^(levels - 1)
  int num_res_blocks = 1;
  int z_channels = 4;
  int temporal_down = 1;              // levels (from the first) whose downsampling also halves time
  int groups = 8;                     // GroupNorm groups, per frame

  static void Describe(config::Fields<VideoVaeOptions>& f);
};

// The patch discriminator (models/vae.h).
struct DiscriminatorOptions {
  int width = 64;  // channels of the first layer (then doubling, at most 8x)
  int layers = 2;  // stride-2 layers

  static void Describe(config::Fields<DiscriminatorOptions>& f);
};

// The latent diffusion U-Net (models/unet.h).
struct UNetOptions {
  std::string size = "";  // a registered size ("S"); empty: the numbers below
  int model_channels = 64;
  std::vector<int> channel_mult{1, 2, 2};
  int num_res_blocks = 1;
  std::vector<int> attention_resolutions{2, 4};  // downsampling factors with a spatial transformer
  int heads = 4;
  int transformer_depth = 1;
  int groups = 32;
  double dropout = 0.0;
  int extra_in_channels = 0;  // input channels beyond x_t (a low-resolution image)
  int embed_dim = 0;          // an extra conditioning vector (a CLIP image embedding); 0 = none
  int embed_tokens = 0;       // context tokens made from it

  static void Describe(config::Fields<UNetOptions>& f);
};

// A BERT-family text encoder (models/bert.h), with the names of Hugging Face's
// BertConfig so that a pretrained checkpoint's config.json maps key for key.
struct BertOptions {
  int vocab_size = 30522;
  int hidden_size = 384;
  int num_hidden_layers = 6;
  int num_attention_heads = 12;
  int intermediate_size = 1536;
  int max_position_embeddings = 512;
  int type_vocab_size = 2;
  double layer_norm_eps = 1e-12;

  static void Describe(config::Fields<BertOptions>& f);
};

}  // namespace loom::models

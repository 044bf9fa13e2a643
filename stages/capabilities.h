// What a trained stage can do at inference, as `loom sample`, `loom eval` and
// `loom data encode` ask for it: make images from text, encode and decode images,
// encode captions, embed images and captions in one space, or compute the outputs a
// cache stores. A stage offers each through Stage::As...(); the
// commands need no stage kind by name.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "data/loader.h"

namespace loom::stages {

// The images a model makes or reads: side, channels, and how the data was fitted.
struct ImageSpec {
  int64_t size = 32;
  int64_t channels = 1;
  std::string fit = "resize";
};

struct GenerateOptions {
  double cfg = 4.0;  // classifier-free guidance scale; 1 = none
  int steps = 50;    // sampling steps
  uint64_t seed = 0; // row i's noise comes from (seed, i): the same seed, the same images
  // A cascade's settings per stage, each empty (the cascade's own) or one per stage;
  // cfg and steps above are then unused.
  std::vector<double> stage_cfg;
  std::vector<int> stage_steps;
  std::vector<double> stage_aug;  // noise-augmentation level of each stage's input (the base's unused)
};

// One super-resolution pass.
struct UpsampleOptions {
  double cfg = 1.0;
  int steps = 25;
  uint64_t seed = 0;
  double aug_level = -1;  // noise-augmentation level of the input in [0, 1]; < 0: the stage's default
};

class TextToImage {
 public:
  virtual ~TextToImage() = default;
  virtual ImageSpec image_spec() const = 0;
  // Images [B, C, H, W] in [-1, 1] for B prompts.
  virtual absl::StatusOr<torch::Tensor> Generate(const std::vector<std::string>& prompts,
                                                 const GenerateOptions& options) = 0;
};

// Clips from text (a video model). Clips are [B, T, C, H, W] in [-1, 1].
class TextToVideo {
 public:
  virtual ~TextToVideo() = default;
  virtual ImageSpec image_spec() const = 0;  // of each frame
  virtual int64_t frames() const = 0;        // of the clips it was trained on (the default)
  // Whether it can make clips of `frames` frames; the error names the counts it can.
  virtual absl::Status CheckFrames(int64_t frames) const = 0;
  virtual absl::StatusOr<torch::Tensor> GenerateClips(const std::vector<std::string>& prompts,
                                                      const GenerateOptions& options, int64_t frames) = 0;
};

class Autoencoder {
 public:
  virtual ~Autoencoder() = default;
  virtual ImageSpec image_spec() const = 0;
  // [C, h, w] of one latent.
  virtual std::vector<int64_t> latent_shape() const = 0;
  // Multiplies latents before diffusion sees them (1 / their std on the training data).
  virtual double latent_scale() const = 0;
  // The posterior of images [B, C, H, W] in [-1, 1]: mean and log-variance stacked on
  // the channel axis, [B, 2c, h, w].
  virtual torch::Tensor Encode(const torch::Tensor& images) = 0;
  // Images in [-1, 1] (not clamped) of unscaled latents [B, c, h, w].
  virtual torch::Tensor Decode(const torch::Tensor& latents) = 0;
};

// Clips to latents and back (a video VAE): time compressed by temporal_factor() (a clip
// of 1 + k s frames has 1 + k latent frames), space by spatial_factor(). Clips are
// [B, T, C, H, W] in [-1, 1]; latents [B, z, t, h, w].
class VideoAutoencoder {
 public:
  virtual ~VideoAutoencoder() = default;
  virtual ImageSpec image_spec() const = 0;  // of each frame
  virtual int64_t temporal_factor() const = 0;
  virtual int64_t spatial_factor() const = 0;
  virtual int64_t z_channels() const = 0;
  // Whether clips of `frames` frames fit; the error names the counts that do.
  virtual absl::Status CheckFrames(int64_t frames) const = 0;
  // Per-channel normalisation measured on the training data: diffusion sees
  // (z - shift) * scale. [z] each, float32 on the CPU.
  virtual torch::Tensor latent_shift() const = 0;
  virtual torch::Tensor latent_scale() const = 0;
  // The posterior of clips: mean and log-variance stacked on the channel axis, [B, 2z, t, h, w].
  virtual torch::Tensor EncodeClips(const torch::Tensor& clips) = 0;
  // Clips [B, T, C, H, W] (not clamped) of unnormalised latents [B, z, t, h, w].
  virtual torch::Tensor DecodeClips(const torch::Tensor& latents) = 0;
};

// A super-resolution stage: higher-resolution images from low-resolution ones and their
// captions, by a factor (any input side whose output the network can take).
class SuperResolution {
 public:
  virtual ~SuperResolution() = default;
  virtual int64_t low_res() const = 0;        // the input side it was trained on
  virtual ImageSpec image_spec() const = 0;   // the output it was trained on (side low_res x factor)
  int64_t factor() const { return image_spec().size / low_res(); }
  // Images [B, C, h * factor, w * factor] in [-1, 1] of images [B, C, h, w] in [-1, 1].
  virtual absl::StatusOr<torch::Tensor> Upsample(const torch::Tensor& low, const std::vector<std::string>& captions,
                                                 const UpsampleOptions& options) = 0;
};

// Per-token features of captions: the context a diffusion network attends to by
// cross-attention (a pretrained text encoder's, frozen).
class TextEncoding {
 public:
  virtual ~TextEncoding() = default;
  virtual int64_t context_dim() const = 0;  // D
  virtual int64_t max_tokens() const = 0;   // L
  // For B captions: features [B, L, D] float32 and mask [B, L] bool (true = real token).
  virtual std::pair<torch::Tensor, torch::Tensor> EncodeText(const std::vector<std::string>& captions) = 0;
};

// Images and captions embedded in one space (a CLIP model), each embedding L2-normalised.
class JointEmbedding {
 public:
  virtual ~JointEmbedding() = default;
  virtual ImageSpec image_spec() const = 0;  // the images it embeds
  virtual int64_t embed_dim() const = 0;
  // [B, D] of images [B, C, H, W] in [-1, 1], on the CPU.
  virtual torch::Tensor EmbedImages(const torch::Tensor& images) = 0;
  // [B, D] of B captions, on the CPU.
  virtual torch::Tensor EmbedTexts(const std::vector<std::string>& captions) = 0;
  // The learned inverse temperature: logits are scale x cosine.
  virtual double logit_scale() const = 0;
};

// New images like given ones (DALL-E 2's variations), made from each one's CLIP image
// embedding.
class ImageVariation {
 public:
  virtual ~ImageVariation() = default;
  virtual ImageSpec image_spec() const = 0;
  // [B, C, S, S] in [-1, 1] from images [B, C, S, S] in [-1, 1] fitted to image_spec().
  virtual absl::StatusOr<torch::Tensor> Vary(const torch::Tensor& images, const GenerateOptions& options) = 0;
};

// How a diffusion prior samples.
struct PriorSampleOptions {
  double cfg = 1.0;    // guidance scale against the null caption; 1 = none
  int steps = 64;      // sampling steps
  int candidates = 2;  // embeddings drawn per caption; the one closest to the caption's text embedding is kept
  uint64_t seed = 0;   // row i's noise comes from (seed, i)
};

// CLIP image embeddings from captions (DALL-E 2's prior), in the space of the CLIP model
// it was trained on.
class EmbeddingPrior {
 public:
  virtual ~EmbeddingPrior() = default;
  virtual int64_t embed_dim() const = 0;
  // L2-normalised image embeddings [B, D] for B captions, on the CPU.
  virtual torch::Tensor PredictImageEmbeddings(const std::vector<std::string>& captions,
                                               const PriorSampleOptions& options) = 0;
  // The CLIP model whose embeddings it predicts (its text tower reads the captions).
  virtual JointEmbedding* clip() = 0;
  // How it samples unless told otherwise (its stage's settings; seed 0).
  virtual PriorSampleOptions default_sampling() const = 0;
};

// One dataset a cache adds to each sample (float32).
struct CacheField {
  std::string name;            // "latents"
  std::vector<int64_t> shape;  // of one sample
};

class CacheProducer {
 public:
  virtual ~CacheProducer() = default;
  virtual std::vector<CacheField> CacheFields() const = 0;
  // Whether it reads pixels, tokens, ... of the source dataset.
  virtual bool needs_pixels() const = 0;
  virtual ImageSpec input_spec() const = 0;
  // Whether the pixels it reads are clips (of frames it can take) rather than images.
  virtual bool reads_clips() const { return false; }
  virtual absl::Status CheckSourceFrames(int64_t frames) const { return absl::OkStatus(); }
  // [B, ...] float32 per field, for a batch of the source dataset.
  virtual std::map<std::string, torch::Tensor> EncodeBatch(const data::Batch& batch) = 0;
};

}  // namespace loom::stages

// Judged text-to-video: for prompts naming a garment and a direction, sample clips and
// ask (1) the image judge what every frame shows (per-frame accuracy, the clip's
// majority vote, and how often the judged class changes between consecutive frames) and
// (2) which way the clip moves, read from the track of the garment's intensity-weighted
// centroid: the axis whose fitted slope is steeper, and its sign. Before trusting the
// direction reader on samples, it is run on real clips of a test split (their captions
// name the direction), together with the judge on their frames: the ceilings a perfect
// model would reach.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/judge.h"

namespace loom::eval {

// The directions, in the order ReadDirections numbers them.
const std::vector<std::string>& Directions();  // left, right, up, down

// The direction (index into Directions()) each clip [B, T, C, H, W] in [-1, 1] moves in.
torch::Tensor ReadDirections(const torch::Tensor& clips);

// The direction a caption names (-1: none): "left", "right", "up"/"upwards", "down"/"downwards".
int DirectionOfCaption(const std::string& caption);

// "{class}", "{a_class}" and "{direction}" filled in.
std::string RenderVideoTemplate(const std::string& templ, const std::string& name, const std::string& direction);

// Wordings of the training captions and wordings they never use.
std::vector<std::string> DefaultVideoTemplates();

struct VideoEvalOptions {
  int64_t per_prompt = 2;               // clips per (template, class, direction)
  int steps = 30;                       // sampling steps (reported; the sampler applies them)
  double cfg = 4.0;                     // guidance scale (reported)
  int64_t frames = 0;                   // frames per clip (reported)
  uint64_t seed = 0;
  std::vector<std::string> templates;   // empty: DefaultVideoTemplates()
  std::string real;                     // a video test split to validate the reader on; empty: none
  int64_t real_limit = 1000;            // clips of it
  int64_t batch = 40;                   // clips sampled at once
};

struct VideoEvalResult {
  struct PerTemplate {
    std::string templ;
    double class_accuracy = 0, vote_accuracy = 0, direction_accuracy = 0;
  };
  std::vector<PerTemplate> templates;
  std::vector<std::string> classes;
  double class_accuracy = 0;      // per frame, over every clip
  double vote_accuracy = 0;       // the clip's majority class
  double direction_accuracy = 0;  // chance: 0.25
  double class_flips = 0;         // share of consecutive frame pairs judged as different classes
  std::vector<double> per_class;      // per-frame accuracy by prompted class
  std::vector<double> per_direction;  // direction accuracy by prompted direction
  // The same reader and judge on real clips (NaN without options.real).
  double real_direction_accuracy = 0, real_class_accuracy = 0, real_vote_accuracy = 0;
  int64_t real_clips = 0;
  int64_t clips = 0, frames = 0;
  double seconds = 0;
  nlohmann::ordered_json ToJson() const;
};

// Clips [B, T, C, H, W] in [-1, 1] for prompts; row i's noise from (seed, i).
using ClipSampler =
    std::function<absl::StatusOr<torch::Tensor>(const std::vector<std::string>& prompts, uint64_t seed)>;

absl::StatusOr<VideoEvalResult> EvaluateVideo(const ClipSampler& sample, const Judge& judge,
                                              const VideoEvalOptions& options);

}  // namespace loom::eval

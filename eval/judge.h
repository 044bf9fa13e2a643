// The judge: a small CNN classifier trained on the real images of a labelled dataset,
// used to score generated images (does the sample show the prompted class?) and to embed
// them (its penultimate features give Fréchet distances). A judge directory holds
//   judge.safetensors      the network
//   judge.json             format, input spec (image size, channels, fit), class names,
//                          test accuracy
//   reference.safetensors  feature statistics of the real test images, and the features
//                          and labels of real training images (for the real-vs-real floor)
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "eval/frechet.h"

namespace loom::eval {

struct JudgeSpec {
  int64_t image_size = 32;
  int64_t channels = 1;
  std::string fit = "pad";
  std::vector<std::string> classes;
};

class JudgeNetImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kFeatures = 128;
  JudgeNetImpl(int64_t channels, int64_t classes, int64_t width);
  torch::Tensor features(const torch::Tensor& images);  // [B, C, H, W] in [-1, 1] -> [B, kFeatures]
  torch::Tensor forward(const torch::Tensor& images);   // logits [B, classes]

  torch::nn::Sequential body{nullptr};
  torch::nn::Linear embed{nullptr}, head{nullptr};
};
TORCH_MODULE(JudgeNet);

struct JudgeTrainOptions {
  std::string data;          // holds train/ and test/ (as `loom data fashion-mnist` makes)
  std::string out;           // the judge directory to write
  int64_t image_size = 32;   // what the judged models generate
  std::string fit = "pad";
  int64_t width = 32;        // channels of the first conv stage (then 2x, 4x)
  int64_t epochs = 3;
  int64_t batch = 128;
  double lr = 2e-3;
  uint64_t seed = 0;
  int64_t reference = 10000;  // training images whose features are kept for the floor
};

struct JudgeReport {
  double test_accuracy = 0;
  int64_t train_samples = 0, test_samples = 0;
  double seconds = 0;
};

absl::StatusOr<JudgeReport> TrainJudge(const JudgeTrainOptions& options);

class Judge {
 public:
  static absl::StatusOr<Judge> Load(const std::string& dir);

  const JudgeSpec& spec() const { return spec_; }
  double test_accuracy() const { return test_accuracy_; }
  // Features [B, kFeatures] and predicted classes [B] of images in [-1, 1].
  torch::Tensor Features(const torch::Tensor& images) const;
  torch::Tensor Predict(const torch::Tensor& images) const;
  const FeatureStats& test_stats() const { return test_stats_; }
  // Statistics of `per_class` real training images of each class (the floor against
  // which samples are compared; fewer when the reference holds fewer).
  FeatureStats TrainStats(int64_t per_class) const;

 private:
  JudgeSpec spec_;
  double test_accuracy_ = 0;
  int64_t width_ = 32;
  mutable JudgeNet net_{nullptr};  // forward passes are logically const
  FeatureStats test_stats_;
  torch::Tensor train_features_, train_labels_;
};

}  // namespace loom::eval

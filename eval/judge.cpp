// The judge classifier (see judge.h).
#include "eval/judge.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "data/loader.h"
#include "data/manifest.h"

namespace loom::eval {
namespace {

namespace fs = std::filesystem;
namespace nn = torch::nn;

constexpr const char* kFormat = "loom-judge";
constexpr int kVersion = 1;

void AddConvBnRelu(nn::Sequential& seq, int64_t in, int64_t out) {
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  seq->push_back(nn::BatchNorm2d(out));
  seq->push_back(nn::ReLU());
}

// The largest batch <= `most` that divides `count`, so whole passes see each sample once.
int64_t DividingBatch(int64_t count, int64_t most) {
  for (int64_t b = std::min(count, most); b > 1; --b) {
    if (count % b == 0) return b;
  }
  return 1;
}

absl::StatusOr<std::unique_ptr<data::Loader>> OpenSplit(const std::string& dir, const JudgeTrainOptions& o,
                                                        int64_t batch, bool flip, uint64_t seed) {
  data::LoaderOptions lo;
  lo.dir = dir;
  lo.batch = batch;
  lo.workers = 1;
  lo.image_size = static_cast<int>(o.image_size);
  lo.fit = o.fit;
  lo.flip = flip;
  return data::Loader::Create(lo, data::LoaderState{0, 0, seed});
}

// Passes over every sample of `dir` once: features, labels and accuracy of `net`.
struct Pass {
  torch::Tensor features, labels;
  double accuracy = 0;
};
absl::StatusOr<Pass> EvaluateSplit(JudgeNet& net, const std::string& dir, const JudgeTrainOptions& o, int64_t limit) {
  ASSIGN_OR_RETURN(data::Manifest m, data::ReadManifest(dir));
  const int64_t count = limit > 0 ? std::min(limit, m.total) : m.total;
  const int64_t batch = DividingBatch(m.total, 500);
  ASSIGN_OR_RETURN(auto loader, OpenSplit(dir, o, batch, false, o.seed));
  torch::NoGradGuard no_grad;
  net->eval();
  std::vector<torch::Tensor> features, labels;
  int64_t correct = 0, seen = 0;
  while (seen < count) {
    ASSIGN_OR_RETURN(data::Batch b, loader->Next());
    const torch::Tensor f = net->features(b.pixels);
    const torch::Tensor predicted = net->head->forward(torch::relu(f)).argmax(1);
    correct += predicted.eq(b.labels).sum().item<int64_t>();
    features.push_back(f);
    labels.push_back(b.labels);
    seen += b.pixels.size(0);
  }
  Pass p;
  p.features = torch::cat(features).narrow(0, 0, count);
  p.labels = torch::cat(labels).narrow(0, 0, count);
  p.accuracy = static_cast<double>(correct) / static_cast<double>(seen);
  return p;
}

}  // namespace

JudgeNetImpl::JudgeNetImpl(int64_t channels, int64_t classes, int64_t width) {
  // Three stages halving the resolution (w, 2w, 4w channels), one more conv at the
  // coarsest scale, global average pooling.
  nn::Sequential layers;
  AddConvBnRelu(layers, channels, width);
  layers->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  AddConvBnRelu(layers, width, 2 * width);
  layers->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  AddConvBnRelu(layers, 2 * width, 4 * width);
  layers->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  AddConvBnRelu(layers, 4 * width, 4 * width);
  body = register_module("body", layers);
  embed = register_module("embed", nn::Linear(4 * width, kFeatures));
  head = register_module("head", nn::Linear(kFeatures, classes));
}

torch::Tensor JudgeNetImpl::features(const torch::Tensor& images) {
  return embed->forward(body->forward(images).mean({2, 3}));  // global average pool
}

torch::Tensor JudgeNetImpl::forward(const torch::Tensor& images) { return head->forward(torch::relu(features(images))); }

absl::StatusOr<JudgeReport> TrainJudge(const JudgeTrainOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  const std::string train_dir = o.data + "/train", test_dir = o.data + "/test";
  ASSIGN_OR_RETURN(data::Manifest train, data::ReadManifest(train_dir));
  ASSIGN_OR_RETURN(data::Manifest test, data::ReadManifest(test_dir));
  if (train.label_names.empty()) {
    return absl::InvalidArgumentError(train_dir + " has no class names; the judge needs a labelled dataset");
  }
  if (test.label_names != train.label_names) {
    return absl::InvalidArgumentError(test_dir + " names other classes than " + train_dir);
  }
  if (train.spec.modality != data::Modality::kImage) return absl::InvalidArgumentError(train_dir + " holds video");
  if (o.fit != "pad" && o.fit != "resize") return absl::InvalidArgumentError("--fit must be pad or resize");
  if (o.epochs < 1 || o.batch < 2 || o.image_size < 8 || o.width < 1) {
    return absl::InvalidArgumentError("--epochs >= 1, --batch >= 2, --width >= 1 and --image-size >= 8 are needed");
  }
  std::error_code ec;
  if (fs::exists(o.out) && !fs::is_empty(o.out) && !fs::exists(fs::path(o.out) / "judge.json")) {
    return absl::AlreadyExistsError(o.out + " exists and is not a judge; choose a new or empty --out");
  }
  fs::create_directories(o.out, ec);
  if (ec) return absl::InternalError("cannot create " + o.out + ": " + ec.message());

  const int64_t classes = static_cast<int64_t>(train.label_names.size());
  torch::manual_seed(o.seed);
  JudgeNet net(train.spec.channels, classes, o.width);
  torch::optim::AdamW optimizer(net->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(1e-4));
  const int64_t steps_per_epoch = train.total / o.batch, total = steps_per_epoch * o.epochs;
  if (steps_per_epoch < 1) return absl::InvalidArgumentError(train_dir + " has fewer samples than --batch");
  ASSIGN_OR_RETURN(auto loader, OpenSplit(train_dir, o, o.batch, /*flip=*/true, o.seed));
  net->train();
  double loss_window = 0;
  int64_t window_steps = 0;
  for (int64_t step = 0; step < total; ++step) {
    ASSIGN_OR_RETURN(data::Batch b, loader->Next());
    const double lr = o.lr * 0.5 * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(b.pixels), b.labels);
    loss.backward();
    optimizer.step();
    loss_window += loss.item<double>();
    ++window_steps;
    if ((step + 1) % 100 == 0 || step + 1 == total) {
      log::Info() << "judge step " << step + 1 << "/" << total << " (epoch " << step / steps_per_epoch + 1
                  << ")  loss " << loss_window / static_cast<double>(window_steps);
      loss_window = 0;
      window_steps = 0;
    }
  }

  ASSIGN_OR_RETURN(Pass test_pass, EvaluateSplit(net, test_dir, o, 0));
  ASSIGN_OR_RETURN(Pass train_pass, EvaluateSplit(net, train_dir, o, o.reference));
  const FeatureStats test_stats = Stats(test_pass.features);
  log::Info() << "judge: test accuracy " << test_pass.accuracy << " on " << test.total << " images";

  std::vector<NamedTensor> weights;
  for (const auto& item : net->named_parameters()) weights.push_back({item.key(), item.value()});
  for (const auto& item : net->named_buffers()) weights.push_back({item.key(), item.value()});
  RETURN_IF_ERROR(WriteSafetensors((fs::path(o.out) / "judge.safetensors").string(), weights, {{"format", kFormat}}));
  RETURN_IF_ERROR(WriteSafetensors((fs::path(o.out) / "reference.safetensors").string(),
                                   {{"test_mean", test_stats.mean},
                                    {"test_cov", test_stats.cov},
                                    {"test_count", torch::tensor({test_stats.count}, torch::kLong)},
                                    {"train_features", train_pass.features},
                                    {"train_labels", train_pass.labels}},
                                   {{"format", kFormat}}));
  JudgeReport report;
  report.test_accuracy = test_pass.accuracy;
  report.train_samples = train.total;
  report.test_samples = test.total;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const nlohmann::ordered_json info = {{"format", kFormat},
                                       {"version", kVersion},
                                       {"image_size", o.image_size},
                                       {"channels", train.spec.channels},
                                       {"width", o.width},
                                       {"fit", o.fit},
                                       {"classes", train.label_names},
                                       {"test_accuracy", report.test_accuracy},
                                       {"train_samples", train.total},
                                       {"test_samples", test.total},
                                       {"data", o.data}};
  RETURN_IF_ERROR(WriteFileAtomic((fs::path(o.out) / "judge.json").string(), info.dump(2) + "\n"));  // last
  return report;
}

absl::StatusOr<Judge> Judge::Load(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::exists(root / "judge.json")) {
    return absl::NotFoundError(dir + " is not a judge (no judge.json); make one with 'loom eval classifier'");
  }
  Judge j;
  try {
    std::ifstream in(root / "judge.json");
    const nlohmann::json info = nlohmann::json::parse(in);
    if (info.at("format") != kFormat || info.at("version") != kVersion) {
      return absl::InvalidArgumentError(dir + "/judge.json: not a loom judge of version " + std::to_string(kVersion));
    }
    j.spec_.image_size = info.at("image_size").get<int64_t>();
    j.spec_.channels = info.at("channels").get<int64_t>();
    j.width_ = info.at("width").get<int64_t>();
    j.spec_.fit = info.at("fit").get<std::string>();
    j.spec_.classes = info.at("classes").get<std::vector<std::string>>();
    j.test_accuracy_ = info.at("test_accuracy").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(dir + "/judge.json is damaged: " + e.what());
  }
  j.net_ = JudgeNet(j.spec_.channels, static_cast<int64_t>(j.spec_.classes.size()), j.width_);
  ASSIGN_OR_RETURN(auto weights, ReadSafetensors((root / "judge.safetensors").string()));
  {
    torch::NoGradGuard no_grad;
    const auto fit = [&](const std::string& name, torch::Tensor& target) -> absl::Status {
      const auto it = weights.find(name);
      if (it == weights.end() || it->second.sizes() != target.sizes()) {
        return absl::DataLossError(dir + "/judge.safetensors: tensor '" + name + "' is missing or has another shape");
      }
      target.copy_(it->second);
      return absl::OkStatus();
    };
    for (auto& item : j.net_->named_parameters()) RETURN_IF_ERROR(fit(item.key(), item.value()));
    for (auto& item : j.net_->named_buffers()) RETURN_IF_ERROR(fit(item.key(), item.value()));
  }
  j.net_->eval();
  ASSIGN_OR_RETURN(auto ref, ReadSafetensors((root / "reference.safetensors").string()));
  for (const char* key : {"test_mean", "test_cov", "test_count", "train_features", "train_labels"}) {
    if (!ref.count(key)) return absl::DataLossError(dir + "/reference.safetensors: no '" + std::string(key) + "'");
  }
  j.test_stats_ = {ref["test_mean"], ref["test_cov"], ref["test_count"].item<int64_t>()};
  j.train_features_ = ref["train_features"];
  j.train_labels_ = ref["train_labels"];
  return j;
}

torch::Tensor Judge::Features(const torch::Tensor& images) const {
  torch::NoGradGuard no_grad;
  return net_->features(images.to(torch::kFloat32));
}

torch::Tensor Judge::Predict(const torch::Tensor& images) const {
  torch::NoGradGuard no_grad;
  return net_->forward(images.to(torch::kFloat32)).argmax(1);
}

FeatureStats Judge::TrainStats(int64_t per_class) const {
  std::vector<torch::Tensor> picked;
  for (int64_t c = 0; c < static_cast<int64_t>(spec_.classes.size()); ++c) {
    const torch::Tensor rows = train_labels_.eq(c).nonzero().flatten();
    picked.push_back(train_features_.index_select(0, rows.narrow(0, 0, std::min(per_class, rows.size(0)))));
  }
  return Stats(torch::cat(picked));
}

}  // namespace loom::eval

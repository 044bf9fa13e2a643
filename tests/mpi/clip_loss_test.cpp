// CLIP's contrastive loss over ranks: N ranks, each on its slice of a global batch, with
// the features gathered with gradients and the gradients averaged over ranks (as every
// strategy does), compute the loss and the gradient of every parameter that one process
// computes on the whole batch, within 1e-5, with either kind of positives. Gathered
// without gradients (only the local block differentiable), the gradients differ: the
// other ranks' losses' terms in this rank's rows are lost. Identical captions as shared
// positives give the one-positive loss and gradient.
#include <gtest/gtest.h>

#include <cstdio>

#include "dist/process_group.h"
#include "dist/runtime.h"
#include "models/clip.h"
#include "stages/clip_stage.h"

namespace loom::stages {
namespace {

dist::ProcessGroup& Group() {
  static std::unique_ptr<dist::ProcessGroup> group = dist::CreateMpiGroup(120);
  return *group;
}

models::ClipConfig Tiny() {
  models::ClipConfig c;
  c.image_size = 8;
  c.channels = 1;
  c.patch = 4;
  c.width = 16;
  c.depth = 1;
  c.heads = 2;
  c.embed_dim = 8;
  c.text = {.width = 16, .depth = 1, .heads = 2, .vocab = 32};
  c.max_tokens = 6;
  return c;
}

struct GlobalBatch {
  torch::Tensor images, tokens, mask;
};

// 8 pairs whose captions repeat (three distinct ones), the same on every rank.
GlobalBatch MakeBatch() {
  torch::manual_seed(7);
  GlobalBatch g;
  g.images = torch::randn({8, 1, 8, 8});
  const torch::Tensor captions = torch::randint(3, 32, {3, 6}, torch::kLong);
  const std::vector<int64_t> lengths = {3, 5, 6};
  g.tokens = torch::zeros({8, 6}, torch::kLong);
  g.mask = torch::zeros({8, 6}, torch::kBool);
  for (int64_t i = 0; i < 8; ++i) {
    const int64_t k = (i * 5) % 3, n = lengths[k];
    g.tokens[i].narrow(0, 0, n).copy_(captions[k].narrow(0, 0, n));
    g.tokens[i][0] = 2;  // the start token
    g.mask[i].narrow(0, 0, n).fill_(true);
  }
  return g;
}

struct Outcome {
  double loss = 0;
  torch::Tensor grad;  // every parameter's gradient, flattened and concatenated
};

// The loss and gradients of `model` on the whole batch (group null) or on this rank's
// slice with the loss gathered over `group`, averaged over ranks.
Outcome Measure(models::ClipModel& model, const GlobalBatch& g, dist::ProcessGroup* group, bool caption_positives,
            bool gather_grad) {
  model->zero_grad();
  const int64_t parts = group ? group->size() : 1, rank = group ? group->rank() : 0;
  const int64_t b = g.images.size(0) / parts;
  const torch::Tensor images = g.images.narrow(0, rank * b, b);
  const torch::Tensor tokens = g.tokens.narrow(0, rank * b, b), mask = g.mask.narrow(0, rank * b, b);
  const auto normalized = [](const torch::Tensor& x) {
    return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  };
  const ContrastiveLoss r =
      ClipLoss(normalized(model->image->forward(images)), normalized(model->text->forward(tokens, mask)),
               caption_positives ? CaptionKeys(tokens, mask) : torch::Tensor(), model->logit_scale, group, gather_grad);
  r.loss.backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad().reshape({-1}).clone());
  Outcome o;
  o.grad = torch::cat(grads);
  torch::Tensor loss = r.loss.detach().reshape({1}).clone();
  if (group != nullptr) {
    EXPECT_TRUE(group->AllReduce(o.grad, dist::ReduceOp::kAverage, dist::Dispatch::kCaller)->Wait().ok());
    EXPECT_TRUE(group->AllReduce(loss, dist::ReduceOp::kAverage, dist::Dispatch::kCaller)->Wait().ok());
  }
  o.loss = loss.item<double>();
  return o;
}

class ClipLossTest : public ::testing::TestWithParam<bool> {};

TEST_P(ClipLossTest, RanksWithGatheredGradientsMatchOneProcessOnTheWholeBatch) {
  const bool caption_positives = GetParam();
  torch::manual_seed(3);  // the same weights on every rank
  models::ClipModel model(Tiny());
  const GlobalBatch g = MakeBatch();
  const Outcome whole = Measure(model, g, nullptr, caption_positives, true);
  const Outcome ranks = Measure(model, g, &Group(), caption_positives, true);
  EXPECT_NEAR(ranks.loss, whole.loss, 1e-6);
  const double max_diff = (ranks.grad - whole.grad).abs().max().item<double>();
  const double rel = ((ranks.grad - whole.grad).norm() / whole.grad.norm()).item<double>();
  EXPECT_LT(max_diff, 1e-5) << "largest gradient difference, 1 process vs " << Group().size() << " ranks";
  EXPECT_LT(rel, 1e-5);
  EXPECT_GT(whole.grad.norm().item<double>(), 1e-3);  // a gradient worth comparing
  if (Group().rank() == 0) {
    std::printf("[ clip loss ] %d ranks, positives %s: loss %.7f vs %.7f, gradient max |diff| %.3g, relative %.3g\n",
                Group().size(), caption_positives ? "caption" : "pair", ranks.loss, whole.loss, max_diff, rel);
  }
}

TEST_P(ClipLossTest, AGatherWithoutGradientsGivesAnotherGradient) {
  const bool caption_positives = GetParam();
  torch::manual_seed(3);
  models::ClipModel model(Tiny());
  const GlobalBatch g = MakeBatch();
  const Outcome whole = Measure(model, g, nullptr, caption_positives, true);
  const Outcome local = Measure(model, g, &Group(), caption_positives, false);
  EXPECT_NEAR(local.loss, whole.loss, 1e-6);  // the same loss value...
  const double rel = ((local.grad - whole.grad).norm() / whole.grad.norm()).item<double>();
  EXPECT_GT(rel, 0.05);  // ...but not the same gradient
  const double ratio = (local.grad.norm() / whole.grad.norm()).item<double>();
  const double cosine = (local.grad.dot(whole.grad) / (local.grad.norm() * whole.grad.norm())).item<double>();
  if (Group().rank() == 0) {
    std::printf("[ clip loss ] %d ranks, positives %s, gathered without gradients: gradient norm %.3f of the true "
                "one, cosine %.3f, relative error %.3f\n",
                Group().size(), caption_positives ? "caption" : "pair", ratio, cosine, rel);
  }
}

// Identical captions have identical embeddings: sharing the target among them gives
// CLIP's one-positive loss and gradient.
TEST(ClipLossPositivesTest, IdenticalCaptionsAsSharedPositivesChangeNeitherLossNorGradient) {
  torch::manual_seed(3);
  models::ClipModel model(Tiny());
  const GlobalBatch g = MakeBatch();
  const Outcome shared = Measure(model, g, &Group(), true, true);
  const Outcome pair = Measure(model, g, &Group(), false, true);
  EXPECT_NEAR(shared.loss, pair.loss, 1e-5);
  EXPECT_LT((shared.grad - pair.grad).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Positives, ClipLossTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Caption" : "Pair"; });

}  // namespace
}  // namespace loom::stages
